// Klasblik on Azure, in an EU region: Container Apps (the server, in its own virtual
// network), PostgreSQL Flexible Server (VNet-integrated), Azure Managed Redis, a Storage
// account without account keys, Key Vault for every secret, a container registry, and a
// managed identity that reaches all of them. Nothing but the app's ingress is public.
// Step by step (three runs of this template): deploy/README.md, "Azure".

targetScope = 'resourceGroup'

@description('EU regions only: data at rest stays in the EU.')
@allowed([
  'westeurope'
  'northeurope'
  'swedencentral'
  'germanywestcentral'
  'francecentral'
  'italynorth'
  'polandcentral'
  'spaincentral'
])
param location string = 'westeurope'

@description('Prefix for resource names (lower-case letters and digits).')
@minLength(3)
@maxLength(12)
param prefix string = 'klasblik'

@description('false on the first run: everything but the app (the image is pushed to the registry in between).')
param deployApp bool = true

@description('Image name and tag in this deployment\'s registry, e.g. klasblik:1.4.0.')
param image string = 'klasblik:latest'

@description('The name teachers and agents use (klasblik.school.example).')
param hostname string

@description('The custom domain, in the order Container Apps needs: none (first runs), added (after the DNS records: CNAME to the app, TXT asuid.HOSTNAME), bound (a managed certificate, HTTPS on the name).')
@allowed([
  'none'
  'added'
  'bound'
])
param customDomain string = 'none'

@secure()
@description('The enrollment token that agents present (pushed by device management).')
param enrollmentToken string

@secure()
@description('Password of the PostgreSQL administrator the server uses.')
param postgresPassword string

@description('Microsoft 365: directory (tenant) id.')
param m365TenantId string

@description('Microsoft 365: application (client) id of the app registration.')
param m365ClientId string

@secure()
@description('Microsoft 365: client secret of the app registration.')
param m365ClientSecret string

@description('App role that makes a staff member an IT admin.')
param m365AdminRole string = 'Klasblik.Admin'

@description('Object id of a group whose members are IT admins (empty: the app role only).')
param m365AdminGroup string = ''

@secure()
@description('Bearer token Prometheus sends to /metrics (empty: /metrics is off).')
param metricsToken string = ''

@minValue(1)
@maxValue(10)
param instances int = 2

@description('Address space of the virtual network; the subnets below are carved from it.')
param vnetPrefix string = '10.42.0.0/16'
param appsSubnetPrefix string = '10.42.0.0/23'
param endpointsSubnetPrefix string = '10.42.2.0/24'
param postgresSubnetPrefix string = '10.42.3.0/24'

var suffix = uniqueString(resourceGroup().id)
var containerName = 'klasblik'
var blobSuffix = environment().suffixes.storage
var roles = {
  acrPull: '7f951dda-4ed3-4680-a7ca-43fe172d538d'
  keyVaultSecretsUser: '4633458b-17de-408a-b874-0445c86b69e6'
  storageBlobDataContributor: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
}

// ---- identity: one user-assigned identity, granted its roles before the app exists ----

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: '${prefix}-id'
  location: location
}

// ---- network ----

resource vnet 'Microsoft.Network/virtualNetworks@2024-01-01' = {
  name: '${prefix}-vnet'
  location: location
  properties: {
    addressSpace: { addressPrefixes: [ vnetPrefix ] }
    subnets: [
      {
        name: 'apps'
        properties: {
          addressPrefix: appsSubnetPrefix
          delegations: [ { name: 'apps', properties: { serviceName: 'Microsoft.App/environments' } } ]
        }
      }
      {
        name: 'endpoints'
        properties: {
          addressPrefix: endpointsSubnetPrefix
          privateEndpointNetworkPolicies: 'Disabled'
        }
      }
      {
        name: 'postgres'
        properties: {
          addressPrefix: postgresSubnetPrefix
          delegations: [ { name: 'postgres', properties: { serviceName: 'Microsoft.DBforPostgreSQL/flexibleServers' } } ]
        }
      }
    ]
  }
}

var appsSubnetId = '${vnet.id}/subnets/apps'
var endpointsSubnetId = '${vnet.id}/subnets/endpoints'
var postgresSubnetId = '${vnet.id}/subnets/postgres'

var privateZones = [
  'privatelink.blob.${blobSuffix}'
  'privatelink.vaultcore.azure.net'
  'privatelink.redis.azure.net'
  '${prefix}.private.postgres.database.azure.com'
]

resource zones 'Microsoft.Network/privateDnsZones@2020-06-01' = [for zone in privateZones: {
  name: zone
  location: 'global'
}]

resource zoneLinks 'Microsoft.Network/privateDnsZones/virtualNetworkLinks@2020-06-01' = [for (zone, i) in privateZones: {
  parent: zones[i]
  name: '${prefix}-link'
  location: 'global'
  properties: {
    registrationEnabled: false
    virtualNetwork: { id: vnet.id }
  }
}]

// ---- Key Vault: every secret the server reads ----

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: take('${prefix}kv${suffix}', 24)
  location: location
  properties: {
    tenantId: subscription().tenantId
    sku: { family: 'A', name: 'standard' }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 30
    enablePurgeProtection: true
    publicNetworkAccess: 'Disabled'
    networkAcls: { defaultAction: 'Deny', bypass: 'AzureServices' }
  }
}

resource secretEnrollment 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: vault
  name: 'enrollment-token'
  properties: { value: enrollmentToken, contentType: 'text/plain' }
}

resource secretPostgres 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: vault
  name: 'database-password'
  properties: { value: postgresPassword, contentType: 'text/plain' }
}

resource secretM365 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: vault
  name: 'm365-client-secret'
  properties: { value: m365ClientSecret, contentType: 'text/plain' }
}

resource secretMetrics 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(metricsToken)) {
  parent: vault
  name: 'metrics-token'
  properties: { value: metricsToken, contentType: 'text/plain' }
}

// the Redis access key goes straight from Redis into the vault: it never passes through
// a parameter, a URL or an output
resource secretRedis 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: vault
  name: 'redis-password'
  properties: { value: redisDb.listKeys().primaryKey, contentType: 'text/plain' }
}

resource vaultRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: vault
  name: guid(vault.id, identity.id, roles.keyVaultSecretsUser)
  properties: {
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsUser)
  }
}

// ---- container registry: the app pulls with its identity, no admin user ----

resource registry 'Microsoft.ContainerRegistry/registries@2023-07-01' = {
  name: take('${prefix}acr${suffix}', 50)
  location: location
  sku: { name: 'Standard' }
  properties: {
    adminUserEnabled: false
    anonymousPullEnabled: false
  }
}

resource registryRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: registry
  name: guid(registry.id, identity.id, roles.acrPull)
  properties: {
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.acrPull)
  }
}

// ---- Storage: the latest thumbnail and tab list per student; Entra ID only ----

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: take('${prefix}st${suffix}', 24)
  location: location
  sku: { name: 'Standard_LRS' }
  kind: 'StorageV2'
  properties: {
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Disabled'
    networkAcls: { defaultAction: 'Deny', bypass: 'AzureServices' }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    // a deleted thumbnail must be gone: no soft delete, no versions (docs/privacy.md)
    deleteRetentionPolicy: { enabled: false }
    containerDeleteRetentionPolicy: { enabled: false }
    isVersioningEnabled: false
  }
}

resource container 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: containerName
  properties: { publicAccess: 'None' }
}

// A second line only: lifecycle rules run in whole days and may take days to act. The
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
            filters: { blobTypes: [ 'blockBlob' ], prefixMatch: [ '${containerName}/students/' ] }
            actions: { baseBlob: { delete: { daysAfterModificationGreaterThan: 1 } } }
          }
        }
      ]
    }
  }
}

resource storageRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: storage
  name: guid(storage.id, identity.id, roles.storageBlobDataContributor)
  properties: {
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataContributor)
  }
}

// ---- PostgreSQL: in its delegated subnet, no public access ----

resource postgres 'Microsoft.DBforPostgreSQL/flexibleServers@2024-08-01' = {
  name: '${prefix}-pg-${suffix}'
  location: location
  sku: { name: 'Standard_B1ms', tier: 'Burstable' }
  properties: {
    version: '16'
    administratorLogin: 'klasblik'
    administratorLoginPassword: postgresPassword
    storage: { storageSizeGB: 32, autoGrow: 'Enabled' }
    backup: { backupRetentionDays: 14, geoRedundantBackup: 'Disabled' }
    network: {
      delegatedSubnetResourceId: postgresSubnetId
      privateDnsZoneArmResourceId: zones[3].id
      publicNetworkAccess: 'Disabled'
    }
  }
  dependsOn: [ zoneLinks ]
}

resource database 'Microsoft.DBforPostgreSQL/flexibleServers/databases@2024-08-01' = {
  parent: postgres
  name: 'klasblik'
}

// ---- Azure Managed Redis: routing between the instances ----

resource redis 'Microsoft.Cache/redisEnterprise@2025-04-01' = {
  name: '${prefix}-redis-${suffix}'
  location: location
  sku: { name: 'Balanced_B0' }
  properties: {
    minimumTlsVersion: '1.2'
    publicNetworkAccess: 'Disabled'
  }
}

resource redisDb 'Microsoft.Cache/redisEnterprise/databases@2025-04-01' = {
  parent: redis
  name: 'default'
  properties: {
    clientProtocol: 'Encrypted'
    port: 10000
    clusteringPolicy: 'EnterpriseCluster'
    evictionPolicy: 'NoEviction'
    accessKeysAuthentication: 'Enabled'
  }
}

// ---- private endpoints: blob, vault and Redis are reached from the VNet only ----

var endpoints = [
  { name: 'blob', target: storage.id, group: 'blob', zone: 0 }
  { name: 'vault', target: vault.id, group: 'vault', zone: 1 }
  { name: 'redis', target: redis.id, group: 'redisEnterprise', zone: 2 }
]

resource privateEndpoints 'Microsoft.Network/privateEndpoints@2024-01-01' = [for ep in endpoints: {
  name: '${prefix}-pe-${ep.name}'
  location: location
  properties: {
    subnet: { id: endpointsSubnetId }
    privateLinkServiceConnections: [
      {
        name: ep.name
        properties: { privateLinkServiceId: ep.target, groupIds: [ ep.group ] }
      }
    ]
  }
}]

resource endpointZones 'Microsoft.Network/privateEndpoints/privateDnsZoneGroups@2024-01-01' = [for (ep, i) in endpoints: {
  parent: privateEndpoints[i]
  name: 'default'
  properties: {
    privateDnsZoneConfigs: [ { name: ep.name, properties: { privateDnsZoneId: zones[ep.zone].id } } ]
  }
}]

// ---- Container Apps ----

resource logs 'Microsoft.OperationalInsights/workspaces@2022-10-01' = {
  name: '${prefix}-logs'
  location: location
  properties: { retentionInDays: 30, sku: { name: 'PerGB2018' } }
}

resource appEnv 'Microsoft.App/managedEnvironments@2024-03-01' = {
  name: '${prefix}-env'
  location: location
  properties: {
    vnetConfiguration: { infrastructureSubnetId: appsSubnetId, internal: false }
    workloadProfiles: [ { name: 'Consumption', workloadProfileType: 'Consumption' } ]
    appLogsConfiguration: {
      destination: 'log-analytics'
      logAnalyticsConfiguration: {
        customerId: logs.properties.customerId
        sharedKey: logs.listKeys().primarySharedKey
      }
    }
  }
}

resource certificate 'Microsoft.App/managedEnvironments/managedCertificates@2024-03-01' = if (deployApp && customDomain == 'bound') {
  parent: appEnv
  name: 'klasblik-cert'
  location: location
  properties: { subjectName: hostname, domainControlValidation: 'CNAME' }
}

var vaultSecret = { identity: identity.id }

resource app 'Microsoft.App/containerApps@2024-03-01' = if (deployApp) {
  name: '${prefix}-server'
  location: location
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: { '${identity.id}': {} }
  }
  properties: {
    managedEnvironmentId: appEnv.id
    workloadProfileName: 'Consumption'
    configuration: {
      activeRevisionsMode: 'Single'
      ingress: {
        external: true
        targetPort: 8080
        transport: 'auto'
        allowInsecure: false
        customDomains: customDomain == 'bound' ? [
          { name: hostname, certificateId: certificate.id, bindingType: 'SniEnabled' }
        ] : customDomain == 'added' ? [
          { name: hostname, bindingType: 'Disabled' }
        ] : []
      }
      registries: [ { server: registry.properties.loginServer, identity: identity.id } ]
      // Key Vault references: the app reads each secret with its identity at start
      secrets: concat([
        union(vaultSecret, { name: 'enrollment-token', keyVaultUrl: secretEnrollment.properties.secretUri })
        union(vaultSecret, { name: 'database-password', keyVaultUrl: secretPostgres.properties.secretUri })
        union(vaultSecret, { name: 'redis-password', keyVaultUrl: secretRedis.properties.secretUri })
        union(vaultSecret, { name: 'm365-client-secret', keyVaultUrl: secretM365.properties.secretUri })
      ], empty(metricsToken) ? [] : [
        union(vaultSecret, { name: 'metrics-token', keyVaultUrl: secretMetrics.properties.secretUri })
      ])
    }
    template: {
      containers: [
        {
          name: 'klasblik'
          image: '${registry.properties.loginServer}/${image}'
          resources: { cpu: json('1.0'), memory: '2Gi' }
          env: concat([
            { name: 'KLASBLIK_PUBLIC_URL', value: 'https://${hostname}' }
            { name: 'KLASBLIK_ENROLLMENT_TOKEN', secretRef: 'enrollment-token' }
            // no password in either URL: each comes from the vault as its own setting
            { name: 'KLASBLIK_DATABASE_URL', value: 'postgresql+asyncpg://klasblik@${postgres.properties.fullyQualifiedDomainName}:5432/klasblik?ssl=require' }
            { name: 'KLASBLIK_DATABASE_PASSWORD', secretRef: 'database-password' }
            { name: 'KLASBLIK_DATABASE_START_TIMEOUT_S', value: '90' }
            { name: 'KLASBLIK_REDIS_URL', value: 'rediss://${redis.properties.hostName}:10000/0' }
            { name: 'KLASBLIK_REDIS_PASSWORD', secretRef: 'redis-password' }
            { name: 'KLASBLIK_BLOB_STORE', value: 'azure:${containerName}' }
            { name: 'KLASBLIK_AZURE_ACCOUNT_URL', value: storage.properties.primaryEndpoints.blob }
            { name: 'KLASBLIK_AZURE_CLIENT_ID', value: identity.properties.clientId }
            { name: 'KLASBLIK_TRUSTED_PROXIES', value: appsSubnetPrefix }
            { name: 'KLASBLIK_M365_TENANT_ID', value: m365TenantId }
            { name: 'KLASBLIK_M365_CLIENT_ID', value: m365ClientId }
            { name: 'KLASBLIK_M365_CLIENT_SECRET', secretRef: 'm365-client-secret' }
            { name: 'KLASBLIK_M365_ADMIN_ROLE', value: m365AdminRole }
            { name: 'KLASBLIK_M365_ADMIN_GROUP', value: m365AdminGroup }
            { name: 'KLASBLIK_LOG_FORMAT', value: 'json' }
          ], empty(metricsToken) ? [] : [
            { name: 'KLASBLIK_METRICS_TOKEN', secretRef: 'metrics-token' }
          ])
          probes: [
            // the process answers once it has started (database reached, schema migrated)
            { type: 'Startup', httpGet: { path: '/livez', port: 8080 }, initialDelaySeconds: 5, periodSeconds: 10, failureThreshold: 10 }
            // the process answers: a database outage is no reason to restart it
            { type: 'Liveness', httpGet: { path: '/livez', port: 8080 }, periodSeconds: 30, failureThreshold: 3 }
            // it can serve: database, blob store and Redis answer
            { type: 'Readiness', httpGet: { path: '/readyz', port: 8080 }, periodSeconds: 10, failureThreshold: 3 }
          ]
        }
      ]
      scale: { minReplicas: instances, maxReplicas: instances }
    }
  }
  dependsOn: [ vaultRole, registryRole, storageRole, endpointZones, database, container ]
}

output registry string = registry.properties.loginServer
output appFqdn string = deployApp ? app.properties.configuration.ingress.fqdn : ''
output customDomainVerificationId string = appEnv.properties.customDomainConfiguration.customDomainVerificationId
output url string = 'https://${hostname}'
