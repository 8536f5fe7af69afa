//! The `xform` binary: a shim over the library so that every test can drive the same code.

// mimalloc: a compile allocates and frees millions of small strings (tokens, template values),
// on several threads; glibc's malloc spent about 15% of a compile profile there. Built without
// transparent huge pages (`no_thp` in Cargo.toml): with them a 10,000-model compile peaked at
// 200 MB instead of 172 MB, for about 0.03 s less.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    std::process::exit(xform::run(std::env::args_os()));
}
