//! `image mount` / `image unmount`: a read-only overlay view of an image's root filesystem
//! at `ROOT/mounts/ID`, as `podman image mount` gives.

use std::path::PathBuf;

use anyhow::{Context, Result};
use stencil_cow_fs::{Snapshotter, mount_all, unmount_all};

use super::Engine;

impl Engine {
    fn mount_point(&self, config_hex: &str) -> PathBuf {
        self.root
            .join("mounts")
            .join(&config_hex[..12.min(config_hex.len())])
    }

    /// Mounts the image named by `name` read-only and returns the mount point; mounting a
    /// mounted image returns the same path.
    pub fn mount_image(&self, name: &str) -> Result<PathBuf> {
        let image = self.find_image(name)?;
        let hex = image.config_digest.hex();
        let target = self.mount_point(hex);
        let key = format!("mount-{}", &hex[..12]);
        if self.snapshots.stat(&key).is_ok() && is_mount_point(&target) {
            return Ok(target);
        }
        self.unpack_image(&image, &|_| {})?;
        let top = image
            .layers
            .last()
            .map(|l| l.chain_id.to_string())
            .context("the image has no layers to mount")?;
        let _ = self.snapshots.remove(&key);
        let mounts = self.snapshots.view(&key, Some(&top))?;
        std::fs::create_dir_all(&target)
            .with_context(|| format!("cannot create {}", target.display()))?;
        mount_all(&mounts, &target)
            .with_context(|| format!("cannot mount {name} at {}", target.display()))?;
        Ok(target)
    }

    /// Unmounts what [`Engine::mount_image`] mounted.
    pub fn unmount_image(&self, name: &str) -> Result<PathBuf> {
        let image = self.find_image(name)?;
        let hex = image.config_digest.hex();
        let target = self.mount_point(hex);
        if is_mount_point(&target) {
            unmount_all(&target).with_context(|| format!("cannot unmount {}", target.display()))?;
        }
        let _ = std::fs::remove_dir(&target);
        let _ = self.snapshots.remove(&format!("mount-{}", &hex[..12]));
        Ok(target)
    }
}

/// Whether something is mounted on `path`, from the kernel's own table (a read-only bind
/// mount keeps the device number, so comparing with the parent is not enough).
fn is_mount_point(path: &std::path::Path) -> bool {
    let Ok(table) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let wanted = path.to_string_lossy();
    table.lines().any(|line| {
        // Field 5 is the mount point, with space, tab, newline and backslash octal-escaped.
        line.split(' ').nth(4).is_some_and(|point| {
            point
                .replace("\\040", " ")
                .replace("\\011", "\t")
                .replace("\\012", "\n")
                .replace("\\134", "\\")
                == wanted
        })
    })
}
