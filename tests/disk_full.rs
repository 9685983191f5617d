//! A pull into a store whose disk fills up: a clear "No space left on device" error that
//! names the file it could not write, the partial download freed (it holds the very space
//! the user must free), a consistent store, and a store that works again once there is room.

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::process::Command;

use stencil_e2e::peers::{DockerRegistry, LayoutBuilder, skopeo_copy};
use stencil_e2e::{Stencil, noise};

/// A tmpfs mounted on a directory, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let status = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .status()
            .expect("mount runs");
        assert!(status.success(), "mounting a tmpfs on {}", dir.display());
        Tmpfs(dir.to_owned())
    }

    fn resize(&self, size: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .expect("mount runs");
        assert!(
            status.success(),
            "resizing the tmpfs on {}",
            self.0.display()
        );
    }

    /// Bytes in use on the file system.
    fn used(&self) -> u64 {
        let path = CString::new(self.0.as_os_str().as_encoded_bytes()).expect("no NUL");
        // SAFETY: statvfs writes into the zeroed struct we own; the path is NUL-terminated.
        let mut stats: libc::statvfs = unsafe { std::mem::zeroed() };
        let rc = unsafe { libc::statvfs(path.as_ptr(), &mut stats) };
        assert_eq!(rc, 0, "statvfs {}", self.0.display());
        (stats.f_blocks - stats.f_bfree) * stats.f_frsize
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_pull_that_fills_the_disk_fails_clearly_frees_its_download_and_leaves_a_working_store() {
    if !stencil_e2e::root_or_skip("disk_full") {
        return;
    }
    let Some(registry) = DockerRegistry::start() else {
        return;
    };
    let stencil = Stencil::new();
    let Some(builder) = LayoutBuilder::new(stencil.scratch(), "big") else {
        return;
    };
    // 12 MiB that do not compress, in a store of 6 MiB.
    let layout = builder.layer(|rootfs| {
        std::fs::create_dir_all(rootfs.join("data")).expect("mkdir");
        std::fs::write(rootfs.join("data/blob"), noise(12 << 20, 7)).expect("write");
    });
    let image = format!("{}/full/big:v1", registry.host());
    skopeo_copy(&layout.skopeo_name(), &format!("docker://{image}")).expect("skopeo copies");

    let disk = Tmpfs::mount(&stencil.root(), "6m");
    let before = disk.used();
    let failed = stencil.run(&["pull", "-q", &image]);
    failed.expect_code(125);
    assert!(
        failed.stderr.contains("No space left on device"),
        "the error says the disk is full: {failed}"
    );
    let error = failed
        .stderr
        .lines()
        .find(|line| line.starts_with("Error: "))
        .unwrap_or_else(|| panic!("an Error: line: {failed}"));
    assert!(
        error.contains(&stencil.root().display().to_string()) && error.contains("No space left"),
        "the error names the file it could not write: {failed}"
    );
    // The partial download is gone: what the failed pull leaves is small (metadata,
    // the config blob), not the megabytes it had fetched.
    let after = disk.used();
    assert!(
        after < before + (1 << 20),
        "the failed pull left {} bytes on a 6 MiB disk: {failed}",
        after - before
    );
    stencil.run(&["images", "-q"]).success().stdout_is("");
    stencil.assert_consistent();

    // With room, the same store pulls the image and stays consistent.
    disk.resize("64m");
    stencil.run(&["pull", "-q", &image]).success();
    stencil
        .run(&["image", "inspect", "--format", "{{.Id}}", &image])
        .success();
    stencil.assert_consistent();
    drop(disk);
}
