//! The structure of `src/` holds: imports run one way, down the layers, and no files
//! import each other in a circle.
//!
//! Each file of `src/` belongs to a room (its folder, or the file itself at the top of
//! `src/`, and the four rooms of `control/`), each room has a floor ([`FLOORS`]), and a
//! file may name items of its own room or of a room on a lower floor, never one above
//! or beside it. Within a room, the files' imports must not run in a circle (between a
//! module and its own submodules, its front, imports run both ways by design). A reference
//! is any `crate::`, `super::` or child-module path outside comments and `#[cfg(test)]`
//! modules, and each `use` item; it is resolved to the file of the longest module path
//! it names.
//!
//! When a new room appears, give it a floor here; when this test fails, move the shared
//! thing down (or invert the call), rather than lowering the guard.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Rooms and their floors, lowest first. A file may import its own room and any room on
/// a lower floor.
const FLOORS: &[(&str, u32)] = &[
    ("clock", 0),
    ("lpm", 0),
    ("policy", 1),
    ("topk", 1),
    ("classify", 2),
    ("datapath", 3),
    // The config compiles the policy and the datapath's settings: above both.
    ("config", 4),
    ("offline", 4),
    ("control/export", 5),
    ("control/overlay", 5),
    ("control/observe", 6),
    ("control/daemon", 7),
    ("control", 8),
    ("cli", 9),
    ("lib", 9),
    ("main", 10),
];

/// The module path of a file (`src/control/overlay/store.rs` -> `control::overlay::store`).
fn module_of(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().expect("a file");
    let stem = last.trim_end_matches(".rs").to_string();
    if stem != "mod" && stem != "lib" && stem != "main" {
        parts.push(stem);
    }
    parts
}

/// The room of a module path: the longest prefix that [`FLOORS`] names.
fn room_of(module: &[String], is_main: bool, is_lib: bool) -> Option<(&'static str, u32)> {
    if is_main {
        return Some(("main", 10));
    }
    if is_lib {
        return Some(("lib", 9));
    }
    let joined = module.join("/");
    FLOORS
        .iter()
        .filter(|(room, _)| joined == *room || joined.starts_with(&format!("{room}/")))
        .max_by_key(|(room, _)| room.len())
        .copied()
}

struct SrcFile {
    rel: PathBuf,
    module: Vec<String>,
    /// Child modules declared in it (`mod x;`).
    children: BTreeSet<String>,
    code: String,
}

fn collect(dir: &Path, root: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read src") {
        let p = e.expect("dir entry").path();
        if p.is_dir() {
            collect(&p, root, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p.strip_prefix(root).expect("under src").to_path_buf());
        }
    }
}

/// The code without comments, string and char literals, and `#[cfg(test)]` items.
fn strip(text: &str) -> String {
    let mut out = String::new();
    let mut skip_depth: Option<i32> = None;
    let mut depth = 0i32;
    let mut pending_test = false;
    for line in blank_literals(text).lines() {
        let code = match line.find("//") {
            Some(i) => &line[..i],
            None => line,
        };
        let t = code.trim();
        if skip_depth.is_none() && t.starts_with("#[cfg(test)]") {
            pending_test = true;
            continue;
        }
        let opens = code.matches('{').count() as i32;
        let closes = code.matches('}').count() as i32;
        if pending_test && !t.is_empty() {
            pending_test = false;
            if opens > closes {
                skip_depth = Some(depth);
            }
            depth += opens - closes;
            continue;
        }
        depth += opens - closes;
        if let Some(d) = skip_depth {
            if depth <= d {
                skip_depth = None;
            }
            continue;
        }
        out.push_str(code);
        out.push('\n');
    }
    out
}

/// `text` with the insides of string literals (raw ones too), char literals and block
/// comments blanked, line breaks kept.
fn blank_literals(text: &str) -> String {
    let c: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let blank = |ch: char| if ch == '\n' { '\n' } else { ' ' };
    while i < c.len() {
        if c[i] == '/' && c.get(i + 1) == Some(&'/') {
            while i < c.len() && c[i] != '\n' {
                out.push(c[i]);
                i += 1;
            }
        } else if c[i] == '/' && c.get(i + 1) == Some(&'*') {
            while i < c.len() && !(c[i] == '*' && c.get(i + 1) == Some(&'/')) {
                out.push(blank(c[i]));
                i += 1;
            }
            i += 2;
        } else if c[i] == 'r'
            && (c.get(i + 1) == Some(&'"') || c.get(i + 1) == Some(&'#'))
            && (i == 0 || !(c[i - 1].is_alphanumeric() || c[i - 1] == '_'))
        {
            let mut j = i + 1;
            let mut hashes = 0;
            while c.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if c.get(j) != Some(&'"') {
                out.push(c[i]);
                i += 1;
                continue;
            }
            out.push('"');
            j += 1;
            loop {
                if j >= c.len() {
                    break;
                }
                if c[j] == '"' && (1..=hashes).all(|k| c.get(j + k) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                out.push(blank(c[j]));
                j += 1;
            }
            out.push('"');
            i = j;
        } else if c[i] == '"' {
            out.push('"');
            i += 1;
            while i < c.len() && c[i] != '"' {
                if c[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if i < c.len() {
                    out.push(blank(c[i]));
                    i += 1;
                }
            }
            out.push('"');
            i += 1;
        } else if c[i] == '\'' {
            // A char literal ('x', '\n', '\u{..}'), not a lifetime.
            let end = if c.get(i + 1) == Some(&'\\') {
                (i + 2..c.len().min(i + 12)).find(|&k| c[k] == '\'')
            } else if c.get(i + 2) == Some(&'\'') {
                Some(i + 2)
            } else {
                None
            };
            match end {
                Some(e) => {
                    out.push_str("' '");
                    i = e + 1;
                }
                None => {
                    out.push('\'');
                    i += 1;
                }
            }
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

/// Every path that starts with `crate::`/`super::`/`self::` or a child module, each
/// `use` group expanded (`a::{b, c::d}` -> `a::b`, `a::c::d`), split into segments.
fn paths(code: &str, children: &BTreeSet<String>) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    // `use` statements (at the start of a line), braces expanded.
    let mut stmt: Option<String> = None;
    for line in code.lines() {
        let t = line.trim();
        if stmt.is_none() {
            let body = t
                .strip_prefix("use ")
                .or_else(|| t.strip_prefix("pub use "))
                .or_else(|| t.strip_prefix("pub(crate) use "))
                .or_else(|| t.strip_prefix("pub(super) use "));
            match body {
                Some(b) => stmt = Some(String::from(b)),
                None => continue,
            }
        } else if let Some(s) = stmt.as_mut() {
            s.push_str(t);
        }
        if let Some(s) = stmt.take_if(|s| s.contains(';')) {
            found.extend(expand(s.split(';').next().unwrap_or("").trim()));
        }
    }
    // Inline paths.
    let bytes: Vec<char> = code.chars().collect();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c.is_alphabetic() || c == '_' || c == '$' {
            let start = i;
            while i < bytes.len() && (bytes[i].is_alphanumeric() || "_:$".contains(bytes[i])) {
                i += 1;
            }
            let word: String = bytes[start..i].iter().collect();
            let prev = if start > 0 { bytes[start - 1] } else { ' ' };
            if prev == '.' || !word.contains("::") {
                continue;
            }
            let segs: Vec<String> = word
                .split("::")
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect();
            let first = segs.first().map(String::as_str).unwrap_or("");
            if ["crate", "$crate", "super", "self"].contains(&first) || children.contains(first) {
                found.push(segs);
            }
        } else {
            i += 1;
        }
    }
    found
}

/// `a::{b, c::{d, e}}` -> `[a,b]`, `[a,c,d]`, `[a,c,e]`.
fn expand(text: &str) -> Vec<Vec<String>> {
    let text: String = text.split_whitespace().collect();
    let Some(open) = text.find('{') else {
        let p = text.split(" as ").next().unwrap_or("").to_string();
        return vec![p
            .split("::")
            .filter(|s| !s.is_empty())
            .map(|s| s.split("as").next().unwrap_or(s).to_string())
            .collect()];
    };
    let prefix = &text[..open];
    let inner = &text[open + 1..text.rfind('}').unwrap_or(text.len())];
    let mut items = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&inner[start..]);
    items
        .into_iter()
        .filter(|s| !s.is_empty())
        .flat_map(|item| expand(&format!("{prefix}{item}")))
        .collect()
}

/// The file a path names: the longest module path among `modules`, after resolving
/// `crate`, `super`, `self` and child modules against `from`.
fn resolve(
    from: &SrcFile,
    segs: &[String],
    modules: &BTreeMap<Vec<String>, usize>,
) -> Option<usize> {
    let mut abs: Vec<String> = Vec::new();
    let mut it = segs.iter().peekable();
    match it.peek().map(|s| s.as_str()) {
        Some("crate" | "$crate") => {
            it.next();
        }
        Some("super") => {
            abs = from.module.clone();
            while it.peek().map(|s| s.as_str()) == Some("super") {
                it.next();
                abs.pop();
            }
        }
        Some("self") => {
            it.next();
            abs = from.module.clone();
        }
        Some(first) if from.children.contains(first) => {
            abs = from.module.clone();
        }
        _ => return None,
    }
    abs.extend(it.filter(|s| *s != "self").cloned());
    (1..=abs.len())
        .rev()
        .find_map(|n| modules.get(&abs[..n]).copied())
}

#[test]
fn imports_run_down_the_layers_and_never_in_a_circle() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut rels = Vec::new();
    collect(&root, &root, &mut rels);
    rels.sort();
    let mut files: Vec<SrcFile> = Vec::new();
    for rel in rels {
        let text = std::fs::read_to_string(root.join(&rel)).expect("read");
        let code = strip(&text);
        let children = code
            .lines()
            .filter_map(|l| {
                let t = l.trim();
                let t = t
                    .strip_prefix("pub mod ")
                    .or_else(|| t.strip_prefix("pub(crate) mod "))
                    .or_else(|| t.strip_prefix("mod "))?;
                t.strip_suffix(';').map(str::to_string)
            })
            .collect();
        let module = module_of(&rel);
        files.push(SrcFile {
            rel,
            module,
            children,
            code,
        });
    }
    let modules: BTreeMap<Vec<String>, usize> = files
        .iter()
        .enumerate()
        .filter(|(_, f)| f.rel != Path::new("main.rs"))
        .map(|(i, f)| (f.module.clone(), i))
        .collect();
    let mut wrong = Vec::new();
    let mut edges: BTreeMap<usize, BTreeSet<usize>> = BTreeMap::new();
    for (i, f) in files.iter().enumerate() {
        let is_main = f.rel == Path::new("main.rs");
        let is_lib = f.rel == Path::new("lib.rs");
        let Some((room, floor)) = room_of(&f.module, is_main, is_lib) else {
            wrong.push(format!(
                "{}: no room in FLOORS (tests/offline/layers.rs)",
                f.rel.display()
            ));
            continue;
        };
        for segs in paths(&f.code, &f.children) {
            let Some(j) = resolve(f, &segs, &modules) else {
                continue;
            };
            if j == i {
                continue;
            }
            let to = &files[j];
            let Some((to_room, to_floor)) =
                room_of(&to.module, false, to.rel == Path::new("lib.rs"))
            else {
                continue;
            };
            // `lib.rs` only declares the modules; a parent `mod.rs` declaring its
            // children is not an import of them.
            if to.rel == Path::new("lib.rs") {
                continue;
            }
            if to_room != room && to_floor >= floor {
                wrong.push(format!(
                    "{} (room {room}, floor {floor}) imports {} ({}) from {} (room {to_room}, floor {to_floor}): imports must run down the floors",
                    f.rel.display(),
                    segs.join("::"),
                    to.module.join("::"),
                    to.rel.display()
                ));
            }
            // A module is the front of its submodules (`mod.rs`, or `x.rs` beside `x/`):
            // it declares and re-exports them, and they use what it holds. Circles are
            // looked for between modules neither of which contains the other.
            let nested = to.module.starts_with(&f.module) || f.module.starts_with(&to.module);
            if to_room == room && !nested {
                edges.entry(i).or_default().insert(j);
            }
        }
    }
    // Circles between the files of one room (a depth-first search).
    let mut state = vec![0u8; files.len()];
    let mut stack: Vec<usize> = Vec::new();
    fn visit(
        n: usize,
        edges: &BTreeMap<usize, BTreeSet<usize>>,
        state: &mut [u8],
        stack: &mut Vec<usize>,
        circles: &mut Vec<Vec<usize>>,
    ) {
        state[n] = 1;
        stack.push(n);
        for &m in edges.get(&n).into_iter().flatten() {
            if state[m] == 1 {
                let at = stack.iter().position(|&x| x == m).expect("on the stack");
                circles.push(stack[at..].to_vec());
            } else if state[m] == 0 {
                visit(m, edges, state, stack, circles);
            }
        }
        stack.pop();
        state[n] = 2;
    }
    let mut circles = Vec::new();
    for n in 0..files.len() {
        if state[n] == 0 {
            visit(n, &edges, &mut state, &mut stack, &mut circles);
        }
    }
    for c in circles {
        let names: Vec<String> = c
            .iter()
            .map(|&i| files[i].rel.display().to_string())
            .collect();
        wrong.push(format!(
            "a circle of imports: {} -> back to the first",
            names.join(" -> ")
        ));
    }
    assert!(
        wrong.is_empty(),
        "the structure of src/ broke ({} problems):\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

/// The checker itself: it sees a use group, a `super::` path and a child module, and
/// it flags a climb and a circle.
#[test]
fn the_checker_sees_imports() {
    let children: BTreeSet<String> = ["store".to_string()].into();
    let p = paths(
        "use crate::a::{b, c::{d, e}};\nfn f() { super::x::y(); store::z(); v.crate_like::q(); }\n",
        &children,
    );
    let p: Vec<String> = p.into_iter().map(|s| s.join("::")).collect();
    for want in [
        "crate::a::b",
        "crate::a::c::d",
        "crate::a::c::e",
        "super::x::y",
        "store::z",
    ] {
        assert!(p.contains(&want.to_string()), "{want} in {p:?}");
    }
    assert!(!p.iter().any(|s| s.contains("crate_like")), "{p:?}");
    let stripped =
        strip("use a;\n#[cfg(test)]\nmod tests {\n    use crate::x;\n}\nuse b;\n// use c;\n");
    assert!(
        stripped.contains("use a;") && stripped.contains("use b;"),
        "{stripped}"
    );
    assert!(
        !stripped.contains("crate::x") && !stripped.contains("use c"),
        "{stripped}"
    );
}
