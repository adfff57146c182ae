//! Upload-time inspection of a component: is it one, what it imports and
//! exports, and whether this host can run it. Runs before anything is
//! compiled or stored.

use wasmparser::{Parser, Payload, Validator, WasmFeatures};

use miniapp_host_api as contract;

/// What the platform learned about an uploaded component without running it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ComponentInfo {
    /// Top-level import names, as the component spells them
    /// (`miniapp:host/log@0.1.0`, `wasi:cli/stdout@0.2.6`).
    pub imports: Vec<String>,
    /// Top-level export names.
    pub exports: Vec<String>,
}

/// Why an upload was refused. Each variant's message names the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("the upload is not a WebAssembly binary")]
    NotWasm,
    #[error(
        "the upload is a core WebAssembly module, not a component; \
         turn it into a component targeting the {world} world (e.g. `wasm-tools component new`)",
        world = world_name()
    )]
    CoreModule,
    #[error("the component is malformed: {0}")]
    Malformed(String),
    #[error("the component imports {0}, which is outside the {world} world", world = world_name())]
    ForbiddenImport(String),
    #[error(
        "the component imports {found}, but this host provides {package}@{version}",
        package = contract::PACKAGE,
        version = contract::VERSION
    )]
    IncompatibleContract { found: String },
    #[error("the component does not export {0}, which every mini-program must")]
    MissingExport(String),
}

fn world_name() -> String {
    format!(
        "{}/{}@{}",
        contract::PACKAGE,
        contract::WORLD,
        contract::VERSION
    )
}

/// The interfaces of the `miniapp:host` package a component may import.
/// Capabilities among them are further limited by each version's manifest
/// (see `lifecycle::capability_diff`).
const HOST_IMPORTS: &[&str] = &[
    "types",
    "log",
    "identity",
    "storage",
    "payment",
    "messaging",
];

/// The interfaces of the `miniapp:host` package a component must export.
const HOST_EXPORTS: &[&str] = &["handler", "events"];

/// The WASI 0.2 interfaces the host links (locked down, see `runtime::wasi`).
const WASI_IMPORTS: &[&str] = &[
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    "wasi:clocks/monotonic-clock",
    "wasi:clocks/wall-clock",
    "wasi:filesystem/types",
    "wasi:filesystem/preopens",
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:random/random",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
    "wasi:sockets/network",
    "wasi:sockets/instance-network",
    "wasi:sockets/udp",
    "wasi:sockets/udp-create-socket",
    "wasi:sockets/tcp",
    "wasi:sockets/tcp-create-socket",
    "wasi:sockets/ip-name-lookup",
];

/// Checks that `bytes` is a well-formed component whose imports this host
/// provides and whose exports make it a mini-program.
pub fn inspect(bytes: &[u8]) -> Result<ComponentInfo, Rejection> {
    if Parser::is_core_wasm(bytes) {
        return Err(Rejection::CoreModule);
    }
    if !Parser::is_component(bytes) {
        return Err(Rejection::NotWasm);
    }
    let mut validator = Validator::new_with_features(WasmFeatures::default());
    validator
        .validate_all(bytes)
        .map_err(|err| Rejection::Malformed(err.to_string()))?;

    let info = top_level_names(bytes)?;
    for import in &info.imports {
        check_import(import)?;
    }
    for wanted in HOST_EXPORTS {
        let exported = info
            .exports
            .iter()
            .any(|name| host_interface(name).is_some_and(|(iface, _)| iface == *wanted));
        if !exported {
            return Err(Rejection::MissingExport(format!(
                "{}/{wanted}@{}",
                contract::PACKAGE,
                contract::VERSION
            )));
        }
    }
    Ok(info)
}

/// Reads the names the outermost component imports and exports, skipping
/// the sections of nested modules and components.
fn top_level_names(bytes: &[u8]) -> Result<ComponentInfo, Rejection> {
    let malformed = |err: wasmparser::BinaryReaderError| Rejection::Malformed(err.to_string());
    let mut info = ComponentInfo {
        imports: Vec::new(),
        exports: Vec::new(),
    };
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.map_err(malformed)? {
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(reader) if depth == 0 => {
                for import in reader {
                    info.imports
                        .push(import.map_err(malformed)?.name.name.to_string());
                }
            }
            Payload::ComponentExportSection(reader) if depth == 0 => {
                for export in reader {
                    info.exports
                        .push(export.map_err(malformed)?.name.name.to_string());
                }
            }
            _ => {}
        }
    }
    Ok(info)
}

/// Splits `miniapp:host/<interface>@<version>` into interface and version.
pub(super) fn host_interface(name: &str) -> Option<(&str, &str)> {
    let rest = name.strip_prefix(contract::PACKAGE)?.strip_prefix('/')?;
    rest.split_once('@')
}

fn check_import(name: &str) -> Result<(), Rejection> {
    if let Some((interface, version)) = host_interface(name) {
        if !HOST_IMPORTS.contains(&interface) {
            return Err(Rejection::ForbiddenImport(name.to_string()));
        }
        if !semver_compatible(version, contract::VERSION) {
            return Err(Rejection::IncompatibleContract {
                found: name.to_string(),
            });
        }
        return Ok(());
    }
    let (interface, version) = name.split_once('@').unwrap_or((name, ""));
    if WASI_IMPORTS.contains(&interface) && version.starts_with("0.2.") {
        return Ok(());
    }
    Err(Rejection::ForbiddenImport(name.to_string()))
}

/// Whether a guest built against `wanted` runs on a host providing
/// `provided`: same major version (same minor while the major is 0), and
/// no newer than the host.
fn semver_compatible(wanted: &str, provided: &str) -> bool {
    let parse = |v: &str| -> Option<(u64, u64, u64)> {
        let mut parts = v.split('.').map(|p| p.parse::<u64>().ok());
        Some((parts.next()??, parts.next()??, parts.next()??))
    };
    match (parse(wanted), parse(provided)) {
        (Some(w), Some(p)) if w.0 == 0 => w.0 == p.0 && w.1 == p.1 && w.2 <= p.2,
        (Some(w), Some(p)) => w.0 == p.0 && (w.1, w.2) <= (p.1, p.2),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_not_wasm() {
        assert_eq!(inspect(b"hello, world"), Err(Rejection::NotWasm));
        assert_eq!(inspect(b""), Err(Rejection::NotWasm));
    }

    #[test]
    fn a_core_module_is_named_as_such() {
        let module = wasmparser::Parser::is_core_wasm(b"\0asm\x01\0\0\0");
        assert!(module);
        assert_eq!(inspect(b"\0asm\x01\0\0\0"), Err(Rejection::CoreModule));
    }

    #[test]
    fn a_truncated_component_is_malformed() {
        let err = inspect(b"\0asm\x0d\0\x01\0\x07\xff").unwrap_err();
        assert!(matches!(err, Rejection::Malformed(_)), "{err:?}");
    }

    #[test]
    fn imports_outside_the_world_are_refused() {
        assert!(check_import("miniapp:host/log@0.1.0").is_ok());
        assert!(check_import("wasi:cli/stdout@0.2.6").is_ok());
        assert_eq!(
            check_import("miniapp:host/bank-vault@0.1.0"),
            Err(Rejection::ForbiddenImport(
                "miniapp:host/bank-vault@0.1.0".into()
            ))
        );
        assert!(matches!(
            check_import("wasi:http/outgoing-handler@0.2.0"),
            Err(Rejection::ForbiddenImport(_))
        ));
        assert!(matches!(
            check_import("env"),
            Err(Rejection::ForbiddenImport(_))
        ));
        assert!(matches!(
            check_import("wasi:cli/stdout@0.3.0"),
            Err(Rejection::ForbiddenImport(_))
        ));
    }

    #[test]
    fn contract_versions_follow_semver() {
        assert!(semver_compatible("0.1.0", "0.1.0"));
        assert!(!semver_compatible("0.1.1", "0.1.0"), "newer than the host");
        assert!(!semver_compatible("0.2.0", "0.1.0"));
        assert!(semver_compatible("1.0.0", "1.2.0"));
        assert!(!semver_compatible("1.3.0", "1.2.0"));
        assert!(!semver_compatible("x", "0.1.0"));
    }
}
