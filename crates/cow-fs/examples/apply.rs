//! `apply LAYER DIR [--overlay]`: applies one layer file (gzip, zstd or plain tar) to an
//! existing directory and prints the time taken; used to measure against `tar -x` and
//! `umoci unpack` on a real root filesystem (see the crate's benchmark notes).

use std::time::Instant;

use stencil_cow_fs::{ApplyOptions, WhiteoutMode, apply_layer};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(layer), Some(dir)) = (args.next(), args.next()) else {
        eprintln!("usage: apply LAYER DIR [--overlay]");
        std::process::exit(2);
    };
    let mode = if args.next().as_deref() == Some("--overlay") {
        WhiteoutMode::Overlay
    } else {
        WhiteoutMode::Delete
    };
    let start = Instant::now();
    let file = std::fs::File::open(&layer)?;
    let stats = apply_layer(file, dir.as_ref(), &ApplyOptions::default().whiteouts(mode))?;
    println!(
        "{:.3}s {} entries {} bytes {:?}",
        start.elapsed().as_secs_f64(),
        stats.entries,
        stats.bytes,
        stats.compression
    );
    Ok(())
}
