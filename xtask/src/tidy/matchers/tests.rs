use super::*;

fn modules(source: &str) -> Vec<(usize, &'static str)> {
    forbidden_std_uses(source)
        .into_iter()
        .map(|found| (found.line, found.module))
        .collect()
}

#[test]
fn flags_each_forbidden_module_with_its_line() {
    let source = "use core::fmt;\nuse std::time::Instant;\nfn f() { std::thread::sleep(d); }\n\
                  let s = std :: net::TcpStream::connect(a);\nuse ::std::process;\n";
    assert_eq!(
        modules(source),
        vec![(2, "time"), (3, "thread"), (4, "net"), (5, "process")]
    );
}

#[test]
fn flags_modules_inside_use_groups() {
    let source =
        "use std::{\n    collections::BTreeMap,\n    thread,\n    time::{Duration, Instant},\n};\n";
    assert_eq!(modules(source), vec![(3, "thread"), (4, "time")]);
    assert_eq!(modules("use std::{io, net::UdpSocket};"), vec![(1, "net")]);
}

#[test]
fn allows_harmless_lookalikes() {
    let source = "use core::time::Duration;\nuse std::timeout_like::X;\nuse mystd::thread;\n\
                  use std::collections::BTreeMap;\nlet processed = std::io::stdout();\n\
                  use std::{io::{self, Read}, fmt};\n";
    assert_eq!(modules(source), vec![]);
}

#[test]
fn ignores_comments_and_literals() {
    let source = concat!(
        "// std::thread would be wrong here\n",
        "/* block std::time /* nested std::net */ still comment std::process */\n",
        "/// Doc: never call std::thread::spawn.\n",
        "const MSG: &str = \"std::time is for shells \\\" std::net\";\n",
        "const RAW: &str = r#\"std::thread \"quoted\" \"#;\n",
        "const QUOTE: char = '\"'; fn f<'a>(x: &'a str) {}\n",
        "use std::time::Duration;\n",
    );
    assert_eq!(modules(source), vec![(7, "time")]);
}

#[test]
fn a_char_quote_does_not_hide_later_code() {
    let source = "let q = '\\''; let e = '\\u{1F600}'; use std::net::Ipv4Addr;\n";
    assert_eq!(modules(source), vec![(1, "net")]);
}

#[test]
fn finds_machine_paths_but_not_urls_or_relative_ones() {
    let [work, root] = [MACHINE_PATH_PREFIXES[0], MACHINE_PATH_PREFIXES[1]];
    let text = format!(
        "fine line\nsee {work}main/README.md\nhttps://example.org{work}x\nrelative/work/x\n\
         HOME={root}x\n\"{root}.cargo\"\n~{work}x\n"
    );
    assert_eq!(absolute_path_lines(&text), vec![2, 5, 6]);
}

#[test]
fn machine_path_prefixes_are_the_two_roots() {
    assert_eq!(
        MACHINE_PATH_PREFIXES,
        ["/wo".to_owned() + "rk/", "/ro".to_owned() + "ot/"]
    );
}
