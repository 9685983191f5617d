//! Criterion benchmark of [`stencil_cow_fs::apply_layer`] on a synthetic layer: 2,000
//! small files in 50 directories plus a few large ones, as plain tar, gzip and zstd.
//!
//! The real-image comparison against GNU tar and umoci (a Debian minbase root filesystem)
//! is measured by hand with `examples/apply.rs`; this bench tracks regressions of the
//! apply path itself. Run with `cargo bench -p stencil-cow-fs`.

use std::io::Write;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use stencil_cow_fs::{ApplyOptions, apply_layer};

fn synthetic_layer() -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let small = vec![b'x'; 4096];
    let large = vec![b'y'; 4 << 20];
    for dir in 0..50 {
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(tar::EntryType::Directory);
        header.set_mode(0o755);
        header.set_size(0);
        builder
            .append_data(&mut header, format!("usr/share/d{dir}"), std::io::empty())
            .expect("dir");
        for file in 0..40 {
            let mut header = tar::Header::new_ustar();
            header.set_mode(0o644);
            header.set_size(small.len() as u64);
            builder
                .append_data(
                    &mut header,
                    format!("usr/share/d{dir}/f{file}"),
                    small.as_slice(),
                )
                .expect("file");
        }
    }
    for file in 0..4 {
        let mut header = tar::Header::new_ustar();
        header.set_mode(0o755);
        header.set_size(large.len() as u64);
        builder
            .append_data(&mut header, format!("usr/bin/big{file}"), large.as_slice())
            .expect("file");
    }
    builder.into_inner().expect("tar")
}

/// A fresh directory on tmpfs when the machine has one: the shared disks here vary 3x
/// from run to run for small-file writes, which would drown the apply path's own cost.
fn scratch_dir() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() {
        tempfile::tempdir_in(shm).expect("tempdir")
    } else {
        tempfile::tempdir().expect("tempdir")
    }
}

fn bench(c: &mut Criterion) {
    let tar = synthetic_layer();
    let gzip = {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(&tar).expect("gzip");
        encoder.finish().expect("gzip")
    };
    let zstd = zstd::encode_all(tar.as_slice(), 3).expect("zstd");
    let options = ApplyOptions::default().preserve_ownership(false);
    let mut group = c.benchmark_group("apply_layer");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(tar.len() as u64));
    for (name, stream) in [("tar", &tar), ("gzip", &gzip), ("zstd", &zstd)] {
        group.bench_function(name, |b| {
            b.iter_batched(
                scratch_dir,
                |dir| {
                    apply_layer(stream.as_slice(), dir.path(), &options).expect("apply");
                    dir
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
