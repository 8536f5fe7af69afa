//! The `xform` binary: a shim over the library so that every test can drive the same code.

fn main() {
    std::process::exit(xform::run(std::env::args_os()));
}
