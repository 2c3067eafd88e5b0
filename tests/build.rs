//! Marks a machine with a single CPU (`cfg(one_cpu)`), where `-t 2` cannot start: the tests
//! that need two cores are then reported as ignored, with that reason, instead of passing
//! without checking anything.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(one_cpu)");
    println!("cargo::rerun-if-changed=build.rs");
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cpus < 2 {
        println!("cargo::rustc-cfg=one_cpu");
    }
}
