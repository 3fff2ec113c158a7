//! `docs/openapi.yaml` and the router in `src/lib.rs` describe the same API: every route and
//! method of one is in the other.
//!
//! Both files are read as text (no YAML parser): the router's `.route("PATH", get(…).post(…))`
//! calls, and the `paths:` section of the description, whose path keys are indented by two
//! spaces and whose operations are `get:`, `post:`, … indented by four.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

const METHODS: [&str; 8] = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

type Ops = BTreeSet<(String, String)>;

fn read(relative: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// `src` without its comments (each replaced by a space); string literals are kept.
fn strip_comments(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' => {
                let end = string_end(b, i);
                out.extend_from_slice(&b[i..end]);
                i = end;
            }
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                out.push(b' ');
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let mut depth = 0;
                while i < b.len() {
                    if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                        depth += 1;
                        i += 2;
                    } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
                out.push(b' ');
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).expect("lib.rs is UTF-8")
}

/// The index just past the string literal that opens at `start` (a `"`).
fn string_end(b: &[u8], start: usize) -> usize {
    let mut i = start + 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    panic!("unterminated string literal in lib.rs")
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// Identifiers (outside string literals) directly followed, after optional spaces, by `(`.
fn called_identifiers(code: &str) -> Vec<String> {
    let b = code.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'"' {
            i = string_end(b, i);
        } else if is_ident(b[i]) && (i == 0 || !is_ident(b[i - 1])) {
            let start = i;
            while i < b.len() && is_ident(b[i]) {
                i += 1;
            }
            let mut j = i;
            while j < b.len() && b[j].is_ascii_whitespace() {
                j += 1;
            }
            if b.get(j) == Some(&b'(') {
                out.push(code[start..i].to_string());
            }
        } else {
            i += 1;
        }
    }
    out
}

/// The router's `(path, method)` pairs, from the `.route(…)` calls of `src/lib.rs`.
fn router_operations() -> Ops {
    let code = strip_comments(&read("src/lib.rs"));
    let b = code.as_bytes();
    let calls = called_identifiers(&code);
    for unsupported in ["nest", "nest_service", "route_service"] {
        assert!(
            !calls.iter().any(|c| c == unsupported),
            "src/lib.rs calls `.{unsupported}(…)`: this test only understands `.route(\"PATH\", …)`; extend it"
        );
    }
    // Merged routers are the web pages (HTML for browsers, not part of the API) and the route
    // groups lib.rs itself builds (hosting, restic, accounts, billing), whose `.route(…)` calls are read
    // here like the others.
    let known = [
        ".merge(web::router())",
        ".merge(account_routes())",
        ".merge(billing_routes())",
        ".merge(restic_routes())",
        ".merge(agent_routes())",
    ];
    let merges = calls.iter().filter(|c| *c == "merge").count();
    let understood: usize = known.iter().map(|k| code.matches(k).count()).sum();
    assert_eq!(
        merges, understood,
        "src/lib.rs merges a router other than the web pages and its own route groups: this test only understands \
         `.route(\"PATH\", …)`"
    );
    let mut ops = Ops::new();
    let mut i = 0;
    let mut routes = 0;
    while i < b.len() {
        if b[i] == b'"' {
            i = string_end(b, i);
            continue;
        }
        if !code[i..].starts_with(".route(") {
            i += 1;
            continue;
        }
        // The arguments: up to the matching parenthesis, skipping string literals.
        let open = i + ".route".len();
        let mut depth = 0;
        let mut j = open;
        let close = loop {
            assert!(j < b.len(), "unbalanced parentheses after the .route( at byte {i} of src/lib.rs");
            match b[j] {
                b'"' => {
                    j = string_end(b, j);
                    continue;
                }
                b'(' => depth += 1,
                b')' => {
                    depth -= 1;
                    if depth == 0 {
                        break j;
                    }
                }
                _ => {}
            }
            j += 1;
        };
        let args = &code[open + 1..close];
        let first = args.trim_start();
        assert!(
            first.starts_with('"'),
            "a .route( in src/lib.rs does not start with a string literal path: {}",
            args.trim()
        );
        let lit_start = open + 1 + (args.len() - first.len());
        let lit_end = string_end(b, lit_start);
        let path = code[lit_start + 1..lit_end - 1].to_string();
        let handlers = &code[lit_end..close];
        let mut methods = Vec::new();
        for name in called_identifiers(handlers) {
            if METHODS.contains(&name.as_str()) {
                methods.push(name);
            } else {
                assert!(
                    !["any", "on", "on_service", "any_service", "get_service", "post_service"].contains(&name.as_str()),
                    "route {path} uses `{name}(…)`, which this test cannot map to methods; extend it"
                );
            }
        }
        assert!(!methods.is_empty(), "route {path} in src/lib.rs has no method (get(…), .post(…), …)");
        for m in methods {
            assert!(ops.insert((path.clone(), m.clone())), "route {path} {m} appears twice in src/lib.rs");
        }
        routes += 1;
        i = close;
    }
    assert!(routes > 0, "no .route(\"PATH\", …) calls found in src/lib.rs");
    ops
}

/// A YAML key line `INDENT` spaces deep: `key:` (nothing after it but a comment, or an inline
/// value when `inline` is true), with optional quotes around the key.
fn yaml_key(line: &str, indent: usize, inline: bool) -> Option<&str> {
    let rest = line.strip_prefix(&" ".repeat(indent))?;
    if rest.starts_with(' ') || rest.starts_with('#') || rest.starts_with('-') {
        return None;
    }
    let (key, after) = if let Some(q) = rest.strip_prefix('\'').or_else(|| rest.strip_prefix('"')) {
        let quote = rest.as_bytes()[0] as char;
        let end = q.find(quote)?;
        (&q[..end], q[end + 1..].strip_prefix(':')?)
    } else {
        let colon = rest.find(": ").map_or_else(|| rest.strip_suffix(':').map(|k| k.len()), Some)?;
        (&rest[..colon], &rest[colon + 1..])
    };
    let after = after.trim();
    if after.is_empty() || after.starts_with('#') || inline {
        Some(key)
    } else {
        None
    }
}

/// The lines of the top-level section `name:` (up to the next top-level key).
fn section<'a>(lines: &[&'a str], name: &str) -> Vec<&'a str> {
    let Some(start) = lines.iter().position(|l| l.trim_end() == format!("{name}:")) else {
        return Vec::new();
    };
    lines[start + 1..]
        .iter()
        .take_while(|l| l.is_empty() || l.starts_with(' ') || l.starts_with('#'))
        .copied()
        .collect()
}

/// One operation of the description, with the lines of its block.
struct Operation<'a> {
    path: String,
    method: String,
    lines: Vec<&'a str>,
}

/// The description's operations, and for each path the lines of its own block (path-level
/// parameters included).
fn spec_operations(yaml: &str) -> (Vec<Operation<'_>>, BTreeMap<String, Vec<&str>>) {
    let lines: Vec<&str> = yaml.lines().collect();
    let paths = section(&lines, "paths");
    assert!(!paths.is_empty(), "docs/openapi.yaml has no (or an empty) top-level `paths:` section");
    let mut ops: Vec<Operation> = Vec::new();
    let mut blocks: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    let mut path: Option<String> = None;
    // The operation the current line belongs to (none on path-level keys such as `parameters:`).
    let mut current: Option<usize> = None;
    for line in paths {
        if let Some(p) = yaml_key(line, 2, false) {
            assert!(p.starts_with('/'), "a key under `paths:` is not a path: {line:?}");
            assert!(!blocks.contains_key(p), "path {p} appears twice in docs/openapi.yaml");
            blocks.insert(p.to_string(), Vec::new());
            path = Some(p.to_string());
            current = None;
            continue;
        }
        let Some(p) = &path else {
            assert!(line.trim().is_empty() || line.trim_start().starts_with('#'), "stray line under paths: {line:?}");
            continue;
        };
        blocks.get_mut(p).expect("the path's block").push(line);
        if let Some(key) = yaml_key(line, 4, true) {
            current = None;
            if METHODS.contains(&key) {
                assert!(
                    yaml_key(line, 4, false).is_some(),
                    "write operations as blocks (`    {key}:` on a line of its own): {p} {line:?}"
                );
                ops.push(Operation { path: p.clone(), method: key.to_string(), lines: Vec::new() });
                current = Some(ops.len() - 1);
            }
            continue;
        }
        if let Some(i) = current {
            ops[i].lines.push(line);
        }
    }
    (ops, blocks)
}

fn list(ops: &Ops) -> String {
    ops.iter().map(|(p, m)| format!("\n  {} {p}", m.to_uppercase())).collect()
}

#[test]
fn the_description_and_the_router_have_the_same_routes() {
    let router = router_operations();
    let yaml = read("../../docs/openapi.yaml");
    let (ops, _) = spec_operations(&yaml);
    let mut spec = Ops::new();
    for op in &ops {
        assert!(
            spec.insert((op.path.clone(), op.method.clone())),
            "{} {} appears twice in docs/openapi.yaml",
            op.method,
            op.path
        );
    }
    let undocumented: Ops = router.difference(&spec).cloned().collect();
    let unrouted: Ops = spec.difference(&router).cloned().collect();
    assert!(
        undocumented.is_empty() && unrouted.is_empty(),
        "docs/openapi.yaml and the router in crates/arca-server/src/lib.rs disagree.\n\
         In the router but missing from docs/openapi.yaml:{}\n\
         In docs/openapi.yaml but not in the router:{}",
        if undocumented.is_empty() { " (none)".to_string() } else { list(&undocumented) },
        if unrouted.is_empty() { " (none)".to_string() } else { list(&unrouted) },
    );
}

#[test]
fn the_description_is_well_formed() {
    let yaml = read("../../docs/openapi.yaml");
    assert!(
        yaml.lines().next().is_some_and(|l| l.trim_end() == "openapi: 3.1.0"),
        "docs/openapi.yaml must start with `openapi: 3.1.0`"
    );
    assert!(!yaml.contains('\t'), "docs/openapi.yaml contains a tab (YAML indents with spaces only)");
    let lines: Vec<&str> = yaml.lines().collect();
    for key in ["info", "paths", "components"] {
        assert!(!section(&lines, key).is_empty(), "docs/openapi.yaml lacks a top-level `{key}:` section");
    }

    // Every `$ref: '#/components/SECTION/NAME'` names something defined there.
    let components = section(&lines, "components");
    let mut defined = BTreeSet::new();
    let mut current = None;
    for line in &components {
        if let Some(s) = yaml_key(line, 2, false) {
            current = Some(s.to_string());
        } else if let (Some(s), Some(name)) = (&current, yaml_key(line, 4, true)) {
            defined.insert(format!("#/components/{s}/{name}"));
        }
    }
    let mut dangling = BTreeSet::new();
    for (at, _) in yaml.match_indices("#/components/") {
        let end = yaml[at..].find(|c: char| !(c.is_ascii_alphanumeric() || c == '/' || c == '#' || c == '_'));
        let target = &yaml[at..at + end.unwrap_or(yaml.len() - at)];
        if !defined.contains(target) {
            dangling.insert(target.to_string());
        }
    }
    assert!(dangling.is_empty(), "docs/openapi.yaml refers to undefined components: {dangling:?}");

    // Path parameters are declared (inline, or through components/parameters).
    let mut param_names: BTreeMap<String, String> = BTreeMap::new();
    let mut in_params = false;
    let mut current = None;
    for line in &components {
        if let Some(s) = yaml_key(line, 2, false) {
            in_params = s == "parameters";
        } else if in_params {
            if let Some(name) = yaml_key(line, 4, false) {
                current = Some(format!("#/components/parameters/{name}"));
            } else if let (Some(c), Some(v)) = (&current, line.trim().strip_prefix("name: ")) {
                param_names.insert(c.clone(), v.trim().to_string());
            }
        }
    }
    let (ops, blocks) = spec_operations(&yaml);
    for (path, block) in &blocks {
        let mut declared = BTreeSet::new();
        for line in block {
            let l = line.trim().trim_start_matches("- ").trim();
            if let Some(v) = l.strip_prefix("name: ") {
                declared.insert(v.trim().to_string());
            }
            if let Some(r) = l.strip_prefix("$ref: ") {
                if let Some(n) = param_names.get(r.trim().trim_matches('\'').trim_matches('"')) {
                    declared.insert(n.clone());
                }
            }
        }
        for segment in path.split('/') {
            if let Some(p) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                assert!(declared.contains(p), "path parameter {{{p}}} of {path} is not declared in docs/openapi.yaml");
            }
        }
    }

    // Each operation answers something, and exactly the public ones need no token.
    let public: Ops = [("/healthz", "get"), ("/v1/auth/login", "post"), ("/v1/setup", "post")]
        .into_iter()
        .map(|(p, m)| (p.to_string(), m.to_string()))
        .collect();
    let mut open = Ops::new();
    for op in &ops {
        assert!(
            op.lines.iter().any(|l| yaml_key(l, 6, false) == Some("responses")),
            "{} {} has no `responses:` in docs/openapi.yaml",
            op.method,
            op.path
        );
        if op.lines.iter().any(|l| l.trim_end() == "      security: []") {
            open.insert((op.path.clone(), op.method.clone()));
        }
    }
    assert_eq!(
        open, public,
        "the operations marked `security: []` (no token) in docs/openapi.yaml must be exactly the public ones"
    );
    assert!(
        yaml.contains("\n  securitySchemes:\n    bearerAuth:\n      type: http\n      scheme: bearer\n"),
        "docs/openapi.yaml must define components/securitySchemes/bearerAuth as http bearer"
    );
}
