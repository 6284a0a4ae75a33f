//! `teesys-guest-init`: PID 1 of the QEMU aarch64 guest (see the crate documentation). It
//! never exits: a fatal error powers the machine off after saying why on the console.

mod shell;

fn main() {
    tee_rt::logging::init("init");
    let guest = match shell::Guest::new() {
        Ok(guest) => guest,
        Err(error) => shell::fail(&error),
    };
    if let Err(error) = shell::check_dev_mem() {
        shell::fail(&error);
    }
    match guest.run() {
        Ok(()) => shell::fail(&std::io::Error::other("the loop ended")),
        Err(error) => shell::fail(&error),
    }
}
