# Installs the Klasblik desktop agent for every user of a Windows device and starts it at
# sign-in, in the user's own session (screen capture needs that session).
# Run as SYSTEM or an administrator, e.g. as an Intune platform script:
#   powershell -ExecutionPolicy Bypass -File install-windows.ps1 -Server wss://klasblik.school.example/ws/agent -Token <enrollment token> -Package klasblik-0.1.0-py3-none-any.whl
# Build the wheel once with `pip wheel --no-deps .` in the repository and ship it with the script.
param(
  [Parameter(Mandatory = $true)][string]$Server,
  [Parameter(Mandatory = $true)][string]$Token,
  [Parameter(Mandatory = $true)][string]$Package,
  [string]$Python = "py",
  [string]$InstallDir = "$env:ProgramFiles\Klasblik"
)
$ErrorActionPreference = "Stop"

if (-not $Server.StartsWith("wss://")) { throw "Server must be a wss:// address (TLS)" }
New-Item -ItemType Directory -Force -Path $InstallDir | Out-Null
& $Python -3.11 -m venv "$InstallDir\venv"
& "$InstallDir\venv\Scripts\python.exe" -m pip install --upgrade "$Package"

# The token and server go into a config file readable by users, writable by admins only.
$config = @"
server = "$Server"
token = "$Token"
"@
Set-Content -Path "$InstallDir\agent.toml" -Value $config -Encoding UTF8
icacls "$InstallDir\agent.toml" /inheritance:r /grant "Administrators:F" /grant "SYSTEM:F" /grant "Users:R" | Out-Null

# The account is the user's Microsoft 365 username (UPN), read at sign-in.
$action = New-ScheduledTaskAction -Execute "$InstallDir\venv\Scripts\pythonw.exe" `
  -Argument "-m klasblik.agent.cli --config `"$InstallDir\agent.toml`" --account-from-upn --log-file `"%LOCALAPPDATA%\Klasblik\agent.log`""
$trigger = New-ScheduledTaskTrigger -AtLogOn
$principal = New-ScheduledTaskPrincipal -GroupId "S-1-5-32-545" -RunLevel Limited  # BUILTIN\Users
$settings = New-ScheduledTaskSettingsSet -AllowStartIfOnBatteries -DontStopIfGoingOnBatteries `
  -ExecutionTimeLimit ([TimeSpan]::Zero) -RestartCount 999 -RestartInterval (New-TimeSpan -Minutes 1)
Register-ScheduledTask -TaskName "Klasblik agent" -Action $action -Trigger $trigger `
  -Principal $principal -Settings $settings -Force | Out-Null
Write-Output "Klasblik agent installed; it starts at the next sign-in."
