; Inno Setup script for the Windows installer. Build on Windows after the PyInstaller bundle:
;   pyinstaller packaging\slipstream.spec
;   iscc /DAppVersion=0.1.0 packaging\windows\slipstream.iss
; Output: dist\slipstream-<version>-windows-x64-setup.exe. The version comes from pyproject.toml
; (the CI workflow passes it with /DAppVersion); the bundle layout is the Linux one (dist\slipstream\).
#ifndef AppVersion
  #define AppVersion "0.0.0"
#endif
#define AppName "Slipstream"
#define AppExe "slipstream.exe"

[Setup]
; Never change AppId: upgrades find the installed copy by it.
AppId={{6F1C7A2E-3B9D-4E55-9A61-2C8D5F0B7E43}
AppName={#AppName}
AppVersion={#AppVersion}
AppPublisher=Slipstream developers
DefaultDirName={autopf}\{#AppName}
DefaultGroupName={#AppName}
DisableProgramGroupPage=yes
PrivilegesRequiredOverridesAllowed=dialog
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
MinVersion=10.0
SourceDir=..\..
OutputDir=dist
OutputBaseFilename=slipstream-{#AppVersion}-windows-x64-setup
SetupIconFile=resources\icons\slipstream.ico
UninstallDisplayIcon={app}\{#AppExe}
Compression=lzma2/max
SolidCompression=yes
WizardStyle=modern
ChangesEnvironment=yes

[Tasks]
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"; Flags: unchecked
Name: "addtopath"; Description: "Add slipstream to PATH (for `slipstream serve` in a terminal)"; Flags: unchecked

[Files]
Source: "dist\slipstream\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{group}\{#AppName}"; Filename: "{app}\{#AppExe}"; WorkingDir: "{userdocs}"
Name: "{autodesktop}\{#AppName}"; Filename: "{app}\{#AppExe}"; WorkingDir: "{userdocs}"; Tasks: desktopicon

[Registry]
Root: HKA; Subkey: "Environment"; ValueType: expandsz; ValueName: "Path"; ValueData: "{olddata};{app}"; \
  Tasks: addtopath; Check: NeedsAddPath(ExpandConstant('{app}'))

[Run]
Filename: "{app}\{#AppExe}"; Parameters: "--version"; Flags: runhidden waituntilterminated; StatusMsg: "Checking the installation..."
Filename: "{app}\{#AppExe}"; Description: "{cm:LaunchProgram,{#AppName}}"; Flags: nowait postinstall skipifsilent

[Code]
function NeedsAddPath(Dir: string): Boolean;
var
  Paths: string;
begin
  if not RegQueryStringValue(HKEY_CURRENT_USER, 'Environment', 'Path', Paths) then
    Paths := '';
  Result := Pos(';' + Uppercase(Dir) + ';', ';' + Uppercase(Paths) + ';') = 0;
end;
