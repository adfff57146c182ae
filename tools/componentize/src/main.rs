//! `componentize`: the build tool that turns a mini-program's core module into
//! a component, and lists what a component imports and exports.
//!
//! ```text
//! componentize <core.wasm> <component.wasm>   encode, validating the result
//! componentize --print-imports <component.wasm>
//! componentize --print-exports <component.wasm>
//! ```
//!
//! The core module must carry the `component-type` custom sections that
//! `wit-bindgen` embeds; the component imports only what the module really
//! calls. The encoding is deterministic: the same module gives the same bytes.

use std::fs;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use wit_component::{ComponentEncoder, DecodedWasm};
use wit_parser::{Resolve, WorldItem, WorldKey};

const USAGE: &str = "usage:
  componentize <core.wasm> <component.wasm>
  componentize --print-imports <component.wasm>
  componentize --print-exports <component.wasm>";

fn main() -> ExitCode {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    let arguments: Vec<&str> = arguments.iter().map(String::as_str).collect();
    let outcome = match arguments.as_slice() {
        ["--print-imports", component] => print_world(Path::new(component), Direction::Imports),
        ["--print-exports", component] => print_world(Path::new(component), Direction::Exports),
        [flag, ..] if flag.starts_with('-') => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
        [module, component] => encode(Path::new(module), Path::new(component)),
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("componentize: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Encodes the core module at `module_path` as a component at `component_path`.
fn encode(module_path: &Path, component_path: &Path) -> Result<()> {
    let module = fs::read(module_path)
        .with_context(|| format!("reading core module {}", module_path.display()))?;
    let component = ComponentEncoder::default()
        .validate(true)
        .module(&module)
        .with_context(|| format!("reading the component type of {}", module_path.display()))?
        .encode()
        .with_context(|| format!("encoding {} as a component", module_path.display()))?;
    fs::write(component_path, component)
        .with_context(|| format!("writing {}", component_path.display()))
}

#[derive(Clone, Copy)]
enum Direction {
    Imports,
    Exports,
}

/// Prints the component's imports or exports, one name a line, in order.
fn print_world(component_path: &Path, direction: Direction) -> Result<()> {
    let bytes = fs::read(component_path)
        .with_context(|| format!("reading {}", component_path.display()))?;
    let decoded = wit_component::decode(&bytes)
        .with_context(|| format!("decoding {}", component_path.display()))?;
    let DecodedWasm::Component(resolve, world) = decoded else {
        bail!(
            "{} is a WIT package, not a component",
            component_path.display()
        );
    };
    let world = &resolve.worlds[world];
    let items = match direction {
        Direction::Imports => &world.imports,
        Direction::Exports => &world.exports,
    };
    for (key, item) in items {
        println!("{}", item_name(&resolve, key, item));
    }
    Ok(())
}

/// An item's name as a reviewer reads it: `wasi:cli/stdout@0.2.12` for an
/// interface, `func name` or `type name` for a bare function or type.
fn item_name(resolve: &Resolve, key: &WorldKey, item: &WorldItem) -> String {
    let name = match key {
        WorldKey::Interface(id) => resolve
            .id_of(*id)
            .unwrap_or_else(|| "<anonymous interface>".to_owned()),
        WorldKey::Name(name) => name.clone(),
    };
    match item {
        WorldItem::Interface { .. } => name,
        WorldItem::Function(_) => format!("func {name}"),
        WorldItem::Type { .. } => format!("type {name}"),
    }
}
