//! Ingest-to-disk throughput (stream, hash, fsync, verify, rename) and fsck throughput
//! (re-hash every blob). Compare ingest with `sha256sum FILE` plus `cat FILE > OTHER` on
//! the same bytes; fsck is reported per byte checked.

use std::io::Write;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use stencil_layerstore::Store;
use stencil_layerstore::content::{ContentWriter, Ingester, Manager, sha256_digest};
use stencil_layerstore::fsck::FsckOptions;

const SIZE: usize = 128 << 20;

fn ingesting(c: &mut Criterion) {
    let bytes: Vec<u8> = (0..SIZE).map(|i| (i * 31 % 251) as u8).collect();
    let digest = sha256_digest(&bytes);
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open store");
    let mut group = c.benchmark_group("store");
    group.throughput(Throughput::Bytes(SIZE as u64));
    group.sample_size(10);
    group.bench_function("ingest_to_disk", |b| {
        b.iter(|| {
            let mut writer = store.content().writer("bench").expect("writer");
            for chunk in bytes.chunks(1 << 20) {
                writer.write_all(chunk).expect("write");
            }
            writer.commit(SIZE as u64, &digest).expect("commit");
            store.content().delete(&digest).expect("delete");
        })
    });
    let mut writer = store.content().writer("bench").expect("writer");
    writer.write_all(&bytes).expect("write");
    writer.commit(SIZE as u64, &digest).expect("commit");
    group.bench_function("fsck", |b| {
        b.iter(|| {
            store
                .fsck(&FsckOptions::default())
                .expect("fsck")
                .bytes_checked
        })
    });
    group.finish();
}

criterion_group!(benches, ingesting);
criterion_main!(benches);
