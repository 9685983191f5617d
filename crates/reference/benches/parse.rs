//! Criterion bench: parse and normalise a fixed mix of 1,000 references.
//!
//! The mix covers the three namespaces, tags, digests, ports and IPv6 domains in roughly the
//! proportions a CLI or a manifest walker sees; one iteration parses all 1,000, so the
//! reported time divided by 1,000 is the cost per reference (target: under 300 ns).
//!
//! The machine is shared with other builds, so besides wall-clock time the bench reports the
//! CPU time of the measuring thread (`*_cpu_time`), which time spent waiting for a core does
//! not inflate.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use stencil_reference::Reference;

/// Templates of the mix; `{n}` is replaced by a counter so that the strings differ.
const TEMPLATES: &[&str] = &[
    "ubuntu",
    "ubuntu:22.04",
    "library/debian:bookworm-slim",
    "jpetazzo/clock",
    "jpetazzo/clock:v{n}",
    "docker.io/bitnami/postgresql:16.4.0-debian-12-r{n}",
    "index.docker.io/nginx:1.27",
    "localhost:5000/wordpress",
    "localhost/app{n}:dev",
    "registry.example.com:5000/my-private/image:{n}",
    "ghcr.io/owner/project/sub-image__x:sha-{n}",
    "quay.io/prometheus/node-exporter@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "gcr.io/distroless/static-debian12:nonroot@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    "[::1]:5000/test/image{n}",
    "192.168.1.10:443/team.a/service-b:release_{n}",
    "alpine@sha512:cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e",
];

fn references() -> Vec<String> {
    (0..1000)
        .map(|i| TEMPLATES[i % TEMPLATES.len()].replace("{n}", &i.to_string()))
        .collect()
}

fn parse_mix(c: &mut Criterion) {
    let inputs = references();
    // A bench over inputs that fail to parse would measure the error path instead.
    for input in &inputs {
        if let Err(err) = Reference::parse(input) {
            panic!("bench input does not parse: {err}");
        }
    }
    let mut group = c.benchmark_group("reference");
    group.throughput(Throughput::Elements(inputs.len() as u64));
    group.bench_function("parse_1000_mixed", |b| {
        b.iter(|| {
            for input in &inputs {
                black_box(Reference::parse(black_box(input)).ok());
            }
        })
    });
    group.bench_function("parse_and_canonical_1000_mixed", |b| {
        b.iter(|| {
            for input in &inputs {
                if let Ok(r) = Reference::parse(black_box(input)) {
                    black_box(r.canonical());
                }
            }
        })
    });
    group.bench_function("parse_1000_mixed_cpu_time", |b| {
        b.iter_custom(|iterations| {
            let start = thread_cpu_time();
            for _ in 0..iterations {
                for input in &inputs {
                    black_box(Reference::parse(black_box(input)).ok());
                }
            }
            thread_cpu_time().saturating_sub(start)
        })
    });
    group.finish();
}

/// CPU time consumed so far by the calling thread.
fn thread_cpu_time() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, writable timespec and the clock id is a constant the kernel
    // knows; the call only writes into `now`.
    let status = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    assert_eq!(status, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    let seconds = u64::try_from(now.tv_sec).unwrap_or(0);
    let nanos = u32::try_from(now.tv_nsec).unwrap_or(0);
    Duration::new(seconds, nanos)
}

criterion_group!(benches, parse_mix);
criterion_main!(benches);
