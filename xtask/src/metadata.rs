//! The workspace's packages and their dependencies, read from `cargo metadata`.
//!
//! Parsing is kept apart from running cargo so the checks built on it can be tested on
//! hand-written JSON.

use std::path::Path;

use serde_json::Value;

use crate::run::cargo;

/// How a package depends on another, as `cargo metadata` spells it in `kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum DepKind {
    Normal,
    Build,
    Dev,
}

impl DepKind {
    /// The word used in messages ("normal dependency", "dev dependency").
    pub fn label(self) -> &'static str {
        match self {
            DepKind::Normal => "normal",
            DepKind::Build => "build",
            DepKind::Dev => "dev",
        }
    }
}

/// One entry of a package's `dependencies`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependency {
    /// The package name (not the `rename` a manifest may give it).
    pub name: String,
    pub kind: DepKind,
    pub optional: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    pub name: String,
    pub dependencies: Vec<Dependency>,
}

/// The workspace members (`--no-deps` lists nothing else).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    pub packages: Vec<Package>,
}

impl Metadata {
    /// Whether a workspace package of this name exists.
    pub fn has_package(&self, name: &str) -> bool {
        self.packages.iter().any(|package| package.name == name)
    }
}

/// Runs `cargo metadata --no-deps` in `root` and parses it.
pub fn load(root: &Path) -> Result<Metadata, String> {
    let output = cargo(root)
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("could not start `cargo metadata`: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "`cargo metadata` failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    parse(&String::from_utf8_lossy(&output.stdout))
}

/// Parses the JSON of `cargo metadata --format-version 1`, keeping only what the checks use.
pub fn parse(json: &str) -> Result<Metadata, String> {
    let root: Value =
        serde_json::from_str(json).map_err(|e| format!("cargo metadata: bad JSON: {e}"))?;
    let packages = root["packages"]
        .as_array()
        .ok_or("cargo metadata: no `packages` array")?
        .iter()
        .map(parse_package)
        .collect::<Result<_, _>>()?;
    Ok(Metadata { packages })
}

fn parse_package(package: &Value) -> Result<Package, String> {
    let name = package["name"]
        .as_str()
        .ok_or("cargo metadata: a package without a name")?;
    let dependencies = package["dependencies"]
        .as_array()
        .ok_or_else(|| format!("cargo metadata: package {name} has no `dependencies` array"))?
        .iter()
        .map(|dependency| parse_dependency(name, dependency))
        .collect::<Result<_, _>>()?;
    Ok(Package {
        name: name.to_owned(),
        dependencies,
    })
}

fn parse_dependency(package: &str, dependency: &Value) -> Result<Dependency, String> {
    let name = dependency["name"]
        .as_str()
        .ok_or_else(|| format!("cargo metadata: a dependency of {package} without a name"))?;
    let kind = match &dependency["kind"] {
        Value::Null => DepKind::Normal,
        Value::String(kind) if kind == "build" => DepKind::Build,
        Value::String(kind) if kind == "dev" => DepKind::Dev,
        other => {
            return Err(format!(
                "cargo metadata: dependency {name} of {package} has unknown kind {other}"
            ))
        }
    };
    Ok(Dependency {
        name: name.to_owned(),
        kind,
        optional: dependency["optional"].as_bool().unwrap_or(false),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn reads_names_kinds_and_optional() {
        let json = r#"{"packages": [
            {"name": "tpmd", "version": "0.1.0", "dependencies": [
                {"name": "tee-proto", "kind": null, "optional": false, "rename": null},
                {"name": "tee-rt", "kind": null, "optional": true},
                {"name": "pkg-config", "kind": "build", "optional": false},
                {"name": "tee-test-support", "kind": "dev", "optional": false}
            ]},
            {"name": "xtask", "dependencies": []}
        ], "workspace_members": []}"#;
        let metadata = parse(json).unwrap();
        assert!(metadata.has_package("xtask"));
        assert!(!metadata.has_package("teed"));
        let kinds: Vec<(&str, DepKind, bool)> = metadata.packages[0]
            .dependencies
            .iter()
            .map(|d| (d.name.as_str(), d.kind, d.optional))
            .collect();
        assert_eq!(
            kinds,
            [
                ("tee-proto", DepKind::Normal, false),
                ("tee-rt", DepKind::Normal, true),
                ("pkg-config", DepKind::Build, false),
                ("tee-test-support", DepKind::Dev, false),
            ]
        );
    }

    #[test]
    fn rejects_what_is_not_cargo_metadata() {
        assert!(parse("not json").unwrap_err().contains("bad JSON"));
        assert!(parse("{}").unwrap_err().contains("packages"));
        let odd_kind = r#"{"packages": [{"name": "a", "dependencies": [
            {"name": "b", "kind": "weird"}]}]}"#;
        assert!(parse(odd_kind).unwrap_err().contains("unknown kind"));
    }
}
