//! Links the system libtpms found through pkg-config.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    match pkg_config::Config::new()
        .atleast_version("0.9")
        .probe("libtpms")
    {
        Ok(_) => {}
        Err(error) => {
            // pkg-config already printed its own diagnostics; name the fix plainly.
            eprintln!(
                "error: libtpms (>= 0.9) was not found through pkg-config: {error}\n\
                 Install it with: apt-get install libtpms-dev pkg-config\n\
                 (`cargo xtask test` installs it automatically)"
            );
            std::process::exit(1);
        }
    }
}
