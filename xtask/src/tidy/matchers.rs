//! Pure text matchers behind tidy, kept apart so they can be tested on strings.

/// std modules that would give a sans-IO core a clock, a socket, a thread or a process.
pub const FORBIDDEN_STD_MODULES: &[&str] = &["time", "net", "thread", "process"];

/// Path prefixes that only exist on the machine a file was written on. Spelled in two pieces
/// so this file does not trip its own rule.
pub const MACHINE_PATH_PREFIXES: &[&str] = &[concat!("/", "work/"), concat!("/", "root/")];

/// One use of a forbidden std module.
#[derive(Debug, PartialEq, Eq)]
pub struct ForbiddenUse {
    /// 1-based line number.
    pub line: usize,
    /// The module named after `std::`.
    pub module: &'static str,
}

/// Finds `std::time`, `std::net`, `std::thread` and `std::process` in Rust code, including
/// inside `use std::{..}` groups, ignoring comments and string literals.
pub fn forbidden_std_uses(source: &str) -> Vec<ForbiddenUse> {
    let code = blank_comments_and_literals(source);
    let bytes = code.as_bytes();
    let mut found = Vec::new();
    let mut search_from = 0;
    while let Some(pos) = code[search_from..].find("std").map(|p| p + search_from) {
        search_from = pos + 3;
        let starts_word = pos == 0 || !is_ident_byte(bytes[pos - 1]);
        if !starts_word {
            continue;
        }
        let Some(after_colons) = skip_path_separator(bytes, pos + 3) else {
            continue;
        };
        let mut report = |at: usize, name: &str| {
            if let Some(module) = FORBIDDEN_STD_MODULES.iter().find(|m| **m == name) {
                found.push(ForbiddenUse {
                    line: line_of(&code, at),
                    module,
                });
            }
        };
        if bytes.get(after_colons) == Some(&b'{') {
            for (at, name) in group_heads(&code, after_colons) {
                report(at, name);
            }
        } else {
            let name = ident_at(&code, after_colons);
            report(after_colons, name);
        }
    }
    found
}

/// 1-based numbers of lines that contain a machine-absolute path.
pub fn absolute_path_lines(text: &str) -> Vec<usize> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| {
            MACHINE_PATH_PREFIXES.iter().any(|prefix| {
                line.match_indices(prefix).any(|(at, _)| {
                    // "example.org/work/" or "my/root/" are not absolute paths.
                    let before = line[..at].chars().next_back();
                    !before.is_some_and(|c| c.is_alphanumeric() || "_.-~".contains(c))
                })
            })
        })
        .map(|(index, _)| index + 1)
        .collect()
}

pub(super) fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// After a word ending at `from` (`std`, `crate`, ..): skips `\s*::\s*` and returns the
/// position after it.
pub(super) fn skip_path_separator(bytes: &[u8], from: usize) -> Option<usize> {
    let at = skip_whitespace(bytes, from);
    if bytes.get(at..at + 2) != Some(b"::") {
        return None;
    }
    Some(skip_whitespace(bytes, at + 2))
}

pub(super) fn skip_whitespace(bytes: &[u8], mut at: usize) -> usize {
    while bytes.get(at).is_some_and(u8::is_ascii_whitespace) {
        at += 1;
    }
    at
}

/// The identifier starting at `at` (empty if none); never slices inside a UTF-8 character.
pub(super) fn ident_at(code: &str, at: usize) -> &str {
    let len = code.as_bytes()[at.min(code.len())..]
        .iter()
        .take_while(|b| is_ident_byte(**b))
        .count();
    // Identifier bytes are ASCII, so a non-empty match starts and ends on character boundaries.
    code.get(at..at + len).unwrap_or("")
}

/// The first path segment of each item in the `{..}` group opening at `open`.
fn group_heads(code: &str, open: usize) -> Vec<(usize, &str)> {
    let bytes = code.as_bytes();
    let mut heads = Vec::new();
    let mut depth = 0usize;
    let mut expecting_head = true;
    let mut at = open;
    while at < bytes.len() {
        match bytes[at] {
            b'{' => {
                depth += 1;
                expecting_head = depth == 1;
            }
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            b',' if depth == 1 => expecting_head = true,
            b if depth == 1 && expecting_head && is_ident_byte(b) => {
                let name = ident_at(code, at);
                heads.push((at, name));
                expecting_head = false;
                at += name.len();
                continue;
            }
            _ => {}
        }
        at += 1;
    }
    heads
}

pub(super) fn line_of(code: &str, at: usize) -> usize {
    code[..at].bytes().filter(|b| *b == b'\n').count() + 1
}

/// Replaces comments and string and char literals with spaces, keeping every newline and byte
/// offset, so matches inside them vanish and line numbers stay true.
pub(super) fn blank_comments_and_literals(source: &str) -> String {
    let bytes = source.as_bytes();
    let mut out = bytes.to_vec();
    let mut at = 0;
    while at < bytes.len() {
        let rest = &bytes[at..];
        let skipped_to = if rest.starts_with(b"//") {
            Some(
                rest.iter()
                    .position(|b| *b == b'\n')
                    .map_or(bytes.len(), |n| at + n),
            )
        } else if rest.starts_with(b"/*") {
            Some(block_comment_end(bytes, at))
        } else if rest[0] == b'"' {
            Some(string_end(bytes, at + 1))
        } else if let Some(hashes) = raw_string_hashes(rest) {
            Some(raw_string_end(bytes, at + 2 + hashes, hashes))
        } else if rest[0] == b'\'' {
            char_literal_end(source, at)
        } else {
            None
        };
        match skipped_to {
            Some(end) => {
                for b in &mut out[at..end] {
                    if *b != b'\n' {
                        *b = b' ';
                    }
                }
                at = end;
            }
            None => at += 1,
        }
    }
    // Every blanked span starts and ends at an ASCII byte, so multi-byte characters are kept or
    // blanked whole and the conversion never substitutes anything (offsets stay exact).
    String::from_utf8_lossy(&out).into_owned()
}

/// End (exclusive) of a possibly nested block comment starting at `start`.
fn block_comment_end(bytes: &[u8], start: usize) -> usize {
    let mut depth = 0usize;
    let mut at = start;
    while at + 1 < bytes.len() {
        match &bytes[at..at + 2] {
            b"/*" => {
                depth += 1;
                at += 2;
            }
            b"*/" => {
                depth -= 1;
                at += 2;
                if depth == 0 {
                    return at;
                }
            }
            _ => at += 1,
        }
    }
    bytes.len()
}

/// End (exclusive) of a string whose contents start at `from`, honouring backslash escapes.
fn string_end(bytes: &[u8], from: usize) -> usize {
    let mut at = from;
    while at < bytes.len() {
        match bytes[at] {
            b'\\' => at += 2,
            b'"' => return at + 1,
            _ => at += 1,
        }
    }
    bytes.len()
}

/// `Some(number of #)` when `rest` opens a raw string `r"` or `r#..#"`.
fn raw_string_hashes(rest: &[u8]) -> Option<usize> {
    if rest.first() != Some(&b'r') {
        return None;
    }
    let hashes = rest[1..].iter().take_while(|b| **b == b'#').count();
    (rest.get(1 + hashes) == Some(&b'"')).then_some(hashes)
}

/// End (exclusive) of a raw string whose contents start at `from`.
fn raw_string_end(bytes: &[u8], from: usize, hashes: usize) -> usize {
    let closes_at = |at: usize| {
        bytes[at] == b'"'
            && bytes
                .get(at + 1..at + 1 + hashes)
                .is_some_and(|tail| tail.iter().all(|b| *b == b'#'))
    };
    (from..bytes.len())
        .find(|at| closes_at(*at))
        .map_or(bytes.len(), |at| at + 1 + hashes)
}

/// End (exclusive) of a char literal whose quote is at `start`, or `None` for a lifetime.
fn char_literal_end(source: &str, start: usize) -> Option<usize> {
    let inner = &source[start + 1..];
    let first = inner.chars().next()?;
    if first == '\\' {
        // Skip the escaped character itself, which may be a quote: '\''.
        let close = inner.get(2..)?.find('\'')?;
        return (close <= 8).then_some(start + 1 + 2 + close + 1);
    }
    let after = start + 1 + first.len_utf8();
    source[after..].starts_with('\'').then_some(after + 1)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
