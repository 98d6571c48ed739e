// Klasblik on Azure, in an EU region: Container Apps (the server), PostgreSQL Flexible
// Server (shared state), Azure Cache for Redis (routing between instances) and a private
// Storage account (latest thumbnails and tab lists). See deploy/README.md.
//
//   az deployment group create -g klasblik-rg -f deploy/azure/main.bicep \
//     -p image=<registry>/klasblik:<tag> enrollmentToken=<token> postgresPassword=<pw> \
//        publicUrl=https://klasblik.school.example

@description('EU regions only: data at rest stays in the EU.')
@allowed([
  'westeurope'
  'northeurope'
  'swedencentral'
  'germanywestcentral'
  'francecentral'
])
param location string = 'westeurope'

@description('Prefix for resource names (lower-case letters and digits).')
@minLength(3)
@maxLength(12)
param prefix string = 'klasblik'

@description('The container image of the Klasblik server.')
param image string

@secure()
@description('The enrollment token that agents present (pushed by device management).')
param enrollmentToken string

@secure()
param postgresPassword string

@description('The address teachers and agents use, https.')
param publicUrl string

@minValue(1)
@maxValue(10)
param instances int = 2

@description('Address range(s) of the ingress proxies in front of the app (the environment\'s infrastructure subnet). Only their X-Forwarded-For is believed; the school locations depend on it.')
param trustedProxies string

var storageName = toLower('${prefix}${uniqueString(resourceGroup().id)}')

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: take(storageName, 24)
  location: location
  sku: { name: 'Standard_LRS' }
  kind: 'StorageV2'
  properties: {
    allowBlobPublicAccess: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    allowSharedKeyAccess: true
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource container 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: 'klasblik'
  properties: { publicAccess: 'None' }
}

// A backstop only: lifecycle rules run in whole days and may take days to act. The
// 48-hour promise is kept by Klasblik's own sweep (docs/privacy.md).
resource lifecycle 'Microsoft.Storage/storageAccounts/managementPolicies@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    policy: {
      rules: [
        {
          name: 'delete-after-two-days-backstop'
          enabled: true
          type: 'Lifecycle'
          definition: {
            filters: { blobTypes: [ 'blockBlob' ], prefixMatch: [ 'klasblik/students/' ] }
            actions: { baseBlob: { delete: { daysAfterModificationGreaterThan: 1 } } }
          }
        }
      ]
    }
  }
}

resource postgres 'Microsoft.DBforPostgreSQL/flexibleServers@2023-06-01-preview' = {
  name: '${prefix}-pg-${uniqueString(resourceGroup().id)}'
  location: location
  sku: { name: 'Standard_B1ms', tier: 'Burstable' }
  properties: {
    version: '16'
    administratorLogin: 'klasblik'
    administratorLoginPassword: postgresPassword
    storage: { storageSizeGB: 32 }
    backup: { backupRetentionDays: 7, geoRedundantBackup: 'Disabled' }
  }
}

resource database 'Microsoft.DBforPostgreSQL/flexibleServers/databases@2023-06-01-preview' = {
  parent: postgres
  name: 'klasblik'
}

resource redis 'Microsoft.Cache/redis@2023-08-01' = {
  name: '${prefix}-redis-${uniqueString(resourceGroup().id)}'
  location: location
  properties: {
    sku: { name: 'Basic', family: 'C', capacity: 0 }
    enableNonSslPort: false
    minimumTlsVersion: '1.2'
  }
}

resource logs 'Microsoft.OperationalInsights/workspaces@2022-10-01' = {
  name: '${prefix}-logs'
  location: location
  properties: { retentionInDays: 30, sku: { name: 'PerGB2018' } }
}

resource appEnv 'Microsoft.App/managedEnvironments@2024-03-01' = {
  name: '${prefix}-env'
  location: location
  properties: {
    appLogsConfiguration: {
      destination: 'log-analytics'
      logAnalyticsConfiguration: {
        customerId: logs.properties.customerId
        sharedKey: logs.listKeys().primarySharedKey
      }
    }
  }
}

var storageConnection = 'DefaultEndpointsProtocol=https;AccountName=${storage.name};AccountKey=${storage.listKeys().keys[0].value};EndpointSuffix=${environment().suffixes.storage}'

resource app 'Microsoft.App/containerApps@2024-03-01' = {
  name: '${prefix}-server'
  location: location
  properties: {
    managedEnvironmentId: appEnv.id
    configuration: {
      ingress: {
        external: true
        targetPort: 8080
        transport: 'auto'
        allowInsecure: false
      }
      secrets: [
        { name: 'enrollment-token', value: enrollmentToken }
        { name: 'database-url', value: 'postgresql+asyncpg://klasblik:${postgresPassword}@${postgres.properties.fullyQualifiedDomainName}/klasblik?ssl=require' }
        { name: 'redis-url', value: 'rediss://:${redis.listKeys().primaryKey}@${redis.properties.hostName}:6380/0' }
        { name: 'storage-connection', value: storageConnection }
      ]
    }
    template: {
      containers: [
        {
          name: 'klasblik'
          image: image
          resources: { cpu: json('1.0'), memory: '2Gi' }
          env: [
            { name: 'KLASBLIK_PUBLIC_URL', value: publicUrl }
            { name: 'KLASBLIK_ENROLLMENT_TOKEN', secretRef: 'enrollment-token' }
            { name: 'KLASBLIK_DATABASE_URL', secretRef: 'database-url' }
            { name: 'KLASBLIK_REDIS_URL', secretRef: 'redis-url' }
            { name: 'KLASBLIK_BLOB_STORE', value: 'azure:klasblik' }
            { name: 'KLASBLIK_AZURE_CONNECTION_STRING', secretRef: 'storage-connection' }
            { name: 'KLASBLIK_TRUSTED_PROXIES', value: trustedProxies }
          ]
          probes: [
            { type: 'Liveness', httpGet: { path: '/healthz', port: 8080 }, periodSeconds: 30 }
          ]
        }
      ]
      scale: { minReplicas: instances, maxReplicas: instances }
    }
  }
}

output url string = 'https://${app.properties.configuration.ingress.fqdn}'
