//! The `miniapp:host` contract: where its WIT lives and which version it is.
//!
//! The WIT files in `wit/` are the one source of truth for the interface
//! between the platform and a mini-program. The host generates its bindings
//! from them with `wasmtime::component::bindgen!`, the SDK with `wit-bindgen`.

/// The WIT package name, without version.
pub const PACKAGE: &str = "miniapp:host";

/// The semver of the WIT package in `wit/host.wit`.
pub const VERSION: &str = "0.1.4";

/// The world every mini-program targets.
pub const WORLD: &str = "mini-program";

/// The directory holding the WIT package, for tools that read it at run time.
pub const WIT_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/wit");

/// The WIT text of the package, for tools that embed it.
pub const WIT: &str = include_str!("../wit/host.wit");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_constant_matches_the_wit_package() {
        let declared = format!("package {PACKAGE}@{VERSION};");
        assert!(
            WIT.lines().any(|line| line.trim() == declared),
            "host.wit must declare `{declared}`"
        );
    }
}
