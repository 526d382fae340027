//! With the `cuda` feature, compiles the CUDA sources in the repository's `kernels/` folder to
//! PTX (one module per `.cu` file) and writes `ptx.rs` with one `&str` constant per module.
//! Without it there is nothing to build: the CPU implementations need no kernels.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    #[cfg(feature = "cuda")]
    {
        let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
        // Read at run time, not with env!(): a build script compiled in one checkout is reused
        // from a shared target folder (CI's cached CUDA target) by checkouts elsewhere.
        let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR");
        let kernels = std::path::Path::new(&manifest).join("../../kernels");
        println!("cargo:rerun-if-changed={}", kernels.display());
        let ptx = cudaforge::KernelBuilder::new()
            .source_dir(&kernels)
            .watch([kernels.join("philox.cuh"), kernels.join("block_reduce.cuh")])
            .arg("-std=c++17")
            .arg("-O3")
            .build_ptx()
            .unwrap_or_else(|e| panic!("compiling {} to PTX: {e}", kernels.display()));
        ptx.write(out_dir.join("ptx.rs"))
            .unwrap_or_else(|e| panic!("writing ptx.rs: {e}"));
    }
}
