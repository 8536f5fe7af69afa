//! The `xform` binary: a shim over the library so that every test can drive the same code.

// mimalloc: a compile allocates and frees millions of small strings (tokens, template values),
// on several threads; glibc's malloc spent about 15% of a compile profile there.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    std::process::exit(xform::run(std::env::args_os()));
}
