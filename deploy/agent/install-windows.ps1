# Installs (or upgrades) the Klasblik desktop agent from its MSI, for every user of this PC.
# Runs as SYSTEM or an administrator: a Group Policy computer startup script, an Intune
# platform script, or by hand. (As an Intune Win32 app, use the MSI itself: see
# deploy/README.md.) Every parameter is optional, so it also runs without arguments:
#   powershell -NoProfile -ExecutionPolicy Bypass -File install-windows.ps1 `
#     -Server wss://klasblik.school.example/ws/agent -Token <enrollment token>
# Without -Server/-Token the MSI writes no settings: IT sets them by Group Policy
# (klasblik.admx) or pushes C:\ProgramData\Klasblik\agent.toml (-ConfigOnly writes it).
# Exit code: the MSI's (0 done, 3010 done but restart needed, 1603 failed, ...), 1 for any
# other failure, 2 for a bad parameter. Nothing here reports success on failure.
param(
  [string]$Server = "",
  [string]$Token = "",
  [string]$Msi = "",
  [ValidateSet("nl", "en")][string]$Language = "nl",
  [switch]$ConfigOnly
)
$ErrorActionPreference = "Stop"
# Messages go to standard error without Write-Error: with "Stop", Write-Error would throw
# and the trap would turn every specific exit code into 1.
function Fail([int]$Code, [string]$Message) {
  [Console]::Error.WriteLine("klasblik-agent install: $Message")
  exit $Code
}
trap { Fail 1 "failed: $_" }

if ($Server -and -not $Server.StartsWith("wss://")) {
  Fail 2 "-Server must be a wss:// address (TLS), got '$Server'"
}
if (($Server -and -not $Token) -or ($Token -and -not $Server)) {
  Fail 2 "-Server and -Token go together"
}
if ($Token -match '[\s"]') {
  Fail 2 "-Token must not contain spaces or quotes"
}

# The settings file IT may push instead of the registry. UTF-8 WITHOUT a byte-order mark:
# Windows PowerShell 5.1's Set-Content/Out-File -Encoding UTF8 add one.
function Write-AgentConfig([string]$Path, [string]$Text) {
  $dir = Split-Path -Parent $Path
  New-Item -ItemType Directory -Force -Path $dir | Out-Null
  $utf8NoBom = New-Object System.Text.UTF8Encoding($false)
  [System.IO.File]::WriteAllText($Path, $Text, $utf8NoBom)
  # Administrators and SYSTEM write it; users (whose session runs the agent) only read it.
  & icacls.exe $Path /inheritance:r /grant "*S-1-5-32-544:F" /grant "*S-1-5-18:F" /grant "*S-1-5-32-545:R" | Out-Null
  if ($LASTEXITCODE -ne 0) { throw "icacls failed on $Path (exit $LASTEXITCODE)" }
}

if ($ConfigOnly) {
  if (-not $Server) { Fail 2 "-ConfigOnly needs -Server and -Token" }
  $config = "server = `"$Server`"`ntoken = `"$Token`"`nlanguage = `"$Language`"`n"
  Write-AgentConfig -Path "$env:ProgramData\Klasblik\agent.toml" -Text $config
  exit 0
}

if (-not $Msi) {
  $found = Get-ChildItem -Path $PSScriptRoot -Filter "klasblik-agent-*.msi" | Sort-Object Name | Select-Object -Last 1
  if (-not $found) { Fail 2 "no klasblik-agent-*.msi next to this script; give -Msi" }
  $Msi = $found.FullName
}
$log = "$env:TEMP\klasblik-agent-install.log"
$arguments = @("/i", "`"$Msi`"", "/qn", "/norestart", "/l*v", "`"$log`"", "LANGUAGE=$Language")
if ($Server) { $arguments += @("SERVER=$Server", "TOKEN=$Token") }
$p = Start-Process -FilePath "msiexec.exe" -ArgumentList $arguments -Wait -PassThru
if ($p.ExitCode -eq 0 -or $p.ExitCode -eq 3010) {
  Write-Output "Klasblik agent installed (msiexec $($p.ExitCode)); it starts at each user's next sign-in."
  exit $p.ExitCode
}
Fail $p.ExitCode "msiexec failed with exit code $($p.ExitCode); see $log"
