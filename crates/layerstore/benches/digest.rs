//! Hash-only throughput of the digests the content store computes while bytes pass
//! (sha256 always, sha512 when a digest names it). Compare with `sha256sum` on the same
//! number of bytes.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use stencil_layerstore::Algorithm;
use stencil_layerstore::content::Digester;

const SIZE: usize = 64 << 20;

fn digesting(c: &mut Criterion) {
    let bytes: Vec<u8> = (0..SIZE).map(|i| (i * 31 % 251) as u8).collect();
    let mut group = c.benchmark_group("digest");
    group.throughput(Throughput::Bytes(SIZE as u64));
    group.sample_size(10);
    for algorithm in [Algorithm::Sha256, Algorithm::Sha512] {
        group.bench_function(algorithm.as_str(), |b| {
            b.iter(|| {
                let mut digester = Digester::new(algorithm)?;
                // Chunks of 1 MiB, as the ingest path feeds them.
                for chunk in bytes.chunks(1 << 20) {
                    digester.update(chunk);
                }
                Some(digester.finish())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, digesting);
criterion_main!(benches);
