//! docs/openapi.yaml must describe exactly the routes beamd serves (`beam::daemon::routes::ROUTES`), every
//! `$ref` in it must point at something defined under `components`, and every request/response type of
//! `src/api/mod.rs` must have a schema. A plain test: no root, no daemon, no YAML parser — it relies on the
//! file's formatting rule: under `paths:` a path is a line indented by exactly two spaces (`  /v1/...:`)
//! and an operation a line indented by exactly four (`    get:`).

use std::collections::BTreeSet;
use std::path::Path;

const METHODS: [&str; 8] = ["get", "put", "post", "delete", "patch", "head", "options", "trace"];

fn read(rel: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

/// Lines that carry YAML structure (not blank, not comments).
fn content_lines(yaml: &str) -> impl Iterator<Item = &str> {
    yaml.lines().filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
}

/// The lines of the top-level section `key:` (up to the next top-level key).
fn section<'a>(yaml: &'a str, key: &str) -> Vec<&'a str> {
    let head = format!("{key}:");
    let mut out = Vec::new();
    let mut inside = false;
    for line in content_lines(yaml) {
        if indent(line) == 0 {
            inside = line.trim_end() == head;
            continue;
        }
        if inside {
            out.push(line);
        }
    }
    out
}

/// (METHOD, path) pairs under `paths:`.
fn openapi_routes(yaml: &str) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    let mut current: Option<String> = None;
    for line in section(yaml, "paths") {
        let t = line.trim_end();
        match indent(t) {
            2 => {
                let key = t.trim_start().strip_suffix(':').unwrap_or_else(|| panic!("path line {t:?} must end with ':'"));
                let key = key.trim_matches(|c| c == '\'' || c == '"');
                assert!(key.starts_with('/'), "under paths:, a two-space line must be a path: {t:?}");
                current = Some(key.to_string());
            }
            4 => {
                let key = t.trim_start().strip_suffix(':').unwrap_or("");
                if METHODS.contains(&key) {
                    let path = current.clone().unwrap_or_else(|| panic!("operation {t:?} before any path"));
                    let fresh = out.insert((key.to_ascii_uppercase(), path.clone()));
                    assert!(fresh, "{} {path} is listed twice in docs/openapi.yaml", key.to_ascii_uppercase());
                }
            }
            _ => {}
        }
    }
    out
}

/// Names defined at `indent` under `components:` → `kind:` (e.g. schemas).
fn component_names(yaml: &str, kind: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut inside = false;
    for line in section(yaml, "components") {
        let t = line.trim_end();
        match indent(t) {
            2 => inside = t.trim_start() == format!("{kind}:"),
            4 if inside => {
                if let Some(name) = t.trim_start().strip_suffix(':') {
                    out.insert(name.to_string());
                }
            }
            _ => {}
        }
    }
    out
}

/// Every `$ref: '#/components/KIND/NAME'` as (KIND, NAME).
fn local_refs(yaml: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for line in content_lines(yaml) {
        let Some((_, r)) = line.split_once("$ref:") else { continue };
        let r = r.trim().trim_matches(|c| c == '\'' || c == '"');
        let rest = r.strip_prefix("#/components/").unwrap_or_else(|| panic!("$ref {r:?} is not local to #/components/"));
        let (kind, name) = rest.split_once('/').unwrap_or_else(|| panic!("$ref {r:?} has no name"));
        out.push((kind.to_string(), name.to_string()));
    }
    out
}

fn set_diff(a: &BTreeSet<(String, String)>, b: &BTreeSet<(String, String)>) -> Vec<String> {
    a.difference(b).map(|(m, p)| format!("{m} {p}")).collect()
}

#[test]
fn openapi_lists_exactly_the_routes() {
    let yaml = read("docs/openapi.yaml");
    let documented = openapi_routes(&yaml);
    let served: BTreeSet<(String, String)> =
        beam::daemon::routes::ROUTES.iter().map(|(m, p, _)| (m.to_string(), p.to_string())).collect();
    assert_eq!(served.len(), beam::daemon::routes::ROUTES.len(), "ROUTES lists a route twice");
    let missing = set_diff(&served, &documented);
    let extra = set_diff(&documented, &served);
    assert!(
        missing.is_empty() && extra.is_empty(),
        "docs/openapi.yaml and beam::daemon::routes::ROUTES differ\n  served but not documented: {missing:?}\n  \
         documented but not served: {extra:?}\n(format rule: under `paths:`, `  /v1/...:` with two spaces, \
         `    get:` with four)"
    );
}

#[test]
fn openapi_refs_are_defined() {
    let yaml = read("docs/openapi.yaml");
    let refs = local_refs(&yaml);
    assert!(refs.iter().any(|(k, _)| k == "schemas"), "no schema $ref found: is the file's formatting intact?");
    let mut undefined = Vec::new();
    for (kind, name) in &refs {
        if !component_names(&yaml, kind).contains(name) {
            undefined.push(format!("#/components/{kind}/{name}"));
        }
    }
    undefined.sort();
    undefined.dedup();
    assert!(undefined.is_empty(), "docs/openapi.yaml refers to undefined components: {undefined:?}");
}

#[test]
fn openapi_has_a_schema_for_every_api_type() {
    let yaml = read("docs/openapi.yaml");
    let schemas = component_names(&yaml, "schemas");
    let api = read("src/api/mod.rs");
    let types: Vec<&str> = api
        .lines()
        .filter_map(|l| l.strip_prefix("pub struct ").or_else(|| l.strip_prefix("pub enum ")))
        .filter_map(|rest| rest.split(|c: char| !c.is_alphanumeric() && c != '_').next())
        .collect();
    assert!(types.contains(&"Sandbox"), "found no types in src/api/mod.rs: {types:?}");
    let missing: Vec<&&str> = types.iter().filter(|t| !schemas.contains(**t)).collect();
    assert!(missing.is_empty(), "src/api/mod.rs types without a schema in docs/openapi.yaml: {missing:?}");
}

#[test]
fn the_scanner_sees_what_it_should() {
    // The scanner itself: a path-level key that is not a method, a nested `get:` deeper than four spaces
    // and the next top-level key are not operations.
    let yaml = "paths:\n  /v1/a/{ref}:\n    parameters: []\n    get:\n      x:\n        get: 1\n    post:\n  \
                /v1/b:\n    delete:\ncomponents:\n  x:\n    get:\n";
    let got = openapi_routes(yaml);
    let want: BTreeSet<(String, String)> = [("GET", "/v1/a/{ref}"), ("POST", "/v1/a/{ref}"), ("DELETE", "/v1/b")]
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(got, want);
}

/// Per schema under `components: schemas:`, the names under its `properties:` (a schema without
/// `properties:` — an enum, a oneOf — is absent).
fn schema_properties(yaml: &str) -> std::collections::BTreeMap<String, BTreeSet<String>> {
    let mut out: std::collections::BTreeMap<String, BTreeSet<String>> = Default::default();
    let (mut in_schemas, mut schema, mut in_props) = (false, None::<String>, false);
    for line in section(yaml, "components") {
        let t = line.trim_end();
        match indent(t) {
            2 => in_schemas = t.trim_start() == "schemas:",
            4 if in_schemas => {
                schema = t.trim_start().strip_suffix(':').map(str::to_string);
                in_props = false;
            }
            6 if in_schemas => {
                in_props = t.trim_start() == "properties:";
                if let (true, Some(s)) = (in_props, &schema) {
                    out.entry(s.clone()).or_default();
                }
            }
            8 if in_schemas && in_props => {
                if let (Some(s), Some(name)) = (&schema, t.trim_start().strip_suffix(':')) {
                    out.entry(s.clone()).or_default().insert(name.to_string());
                }
            }
            _ => {}
        }
    }
    out
}

/// Per `pub struct` with named fields in src/api/mod.rs, its fields as they appear on the wire
/// (`#[serde(rename = "…")]` applied, `#[serde(skip)]` left out).
fn api_struct_fields(src: &str) -> std::collections::BTreeMap<String, BTreeSet<String>> {
    let mut out: std::collections::BTreeMap<String, BTreeSet<String>> = Default::default();
    let (mut current, mut rename, mut skip) = (None::<String>, None::<String>, false);
    for line in src.lines() {
        if let Some(rest) = line.strip_prefix("pub struct ") {
            if rest.trim_end().ends_with('{') {
                let name = rest.split(|c: char| !c.is_alphanumeric() && c != '_').next().unwrap_or_default();
                current = Some(name.to_string());
                out.entry(name.to_string()).or_default();
            }
            continue;
        }
        if line.starts_with('}') {
            current = None;
            continue;
        }
        let Some(s) = &current else { continue };
        let t = line.trim();
        if t.starts_with("#[serde(") {
            if let Some((_, r)) = t.split_once("rename = \"") {
                rename = r.split('"').next().map(str::to_string);
            }
            skip |= t.contains("skip)") || t.contains("skip,") || t.contains("(skip");
            continue;
        }
        if let Some(field) = line.strip_prefix("    pub ").and_then(|f| f.split_once(':')).map(|(n, _)| n.trim()) {
            if !skip {
                out.get_mut(s).expect("current struct").insert(rename.take().unwrap_or_else(|| field.to_string()));
            }
            (rename, skip) = (None, false);
        }
    }
    out
}

/// The schema of each API struct names exactly the fields the struct has on the wire: a field added
/// to the code but not to docs/openapi.yaml (or the other way round) fails here.
#[test]
fn openapi_schemas_have_the_structs_fields() {
    let yaml = read("docs/openapi.yaml");
    let props = schema_properties(&yaml);
    let structs = api_struct_fields(&read("src/api/mod.rs"));
    assert!(structs.get("Sandbox").is_some_and(|f| f.contains("keep_warm_seconds")), "the struct scanner found no Sandbox fields");
    let mut differ = Vec::new();
    for (name, fields) in &structs {
        if fields.is_empty() {
            continue;
        }
        let Some(documented) = props.get(name) else {
            differ.push(format!("{name}: no `properties:` in its schema"));
            continue;
        };
        let missing: Vec<&String> = fields.difference(documented).collect();
        let extra: Vec<&String> = documented.difference(fields).collect();
        if !missing.is_empty() || !extra.is_empty() {
            differ.push(format!("{name}: in the code but not documented {missing:?}, documented but not in the code {extra:?}"));
        }
    }
    assert!(differ.is_empty(), "docs/openapi.yaml schemas and src/api/mod.rs differ:\n  {}", differ.join("\n  "));
}
