//! A track's `path`: relative to the library, inside it, an existing file the ingest will see.

use std::io;
use std::path::{Component, Path, PathBuf};

use super::error::Problem;

/// A track path checked against the library.
#[derive(Debug)]
pub(super) struct TrackPath {
    /// The path relative to the library, without `.` components: what duplicates are judged on.
    pub relative: PathBuf,
    /// The library's canonical path joined with `relative`: the key the library index uses.
    pub absolute: PathBuf,
}

/// Checks `written` (a `path` value) against the canonical `library` folder.
pub(super) fn resolve(written: &str, library: &Path) -> Result<TrackPath, Problem> {
    let path = Path::new(written);
    if written.trim().is_empty() {
        return Err(Problem::EmptyPath);
    }
    let mut relative = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => relative.push(part),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => {
                return Err(Problem::AbsolutePath {
                    path: path.to_path_buf(),
                    library: library.to_path_buf(),
                });
            }
            Component::ParentDir => {
                return Err(Problem::EscapesLibrary {
                    path: path.to_path_buf(),
                    library: library.to_path_buf(),
                });
            }
        }
    }
    let Some(name) = relative.file_name() else {
        return Err(Problem::EmptyPath);
    };
    // The ingest leaves out hidden files (".DS_Store", "._" resource forks), so such a track would
    // never get a TrackRef.
    if name.to_string_lossy().starts_with('.') {
        return Err(Problem::HiddenFile {
            path: path.to_path_buf(),
        });
    }
    let absolute = library.join(&relative);
    match absolute.metadata() {
        Ok(meta) if meta.is_file() => Ok(TrackPath { relative, absolute }),
        Ok(_) => Err(Problem::NotAFile {
            path: path.to_path_buf(),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(Problem::NotFound {
            path: path.to_path_buf(),
            library: library.to_path_buf(),
        }),
        Err(source) => Err(Problem::Unreadable {
            path: path.to_path_buf(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve_inside_the_library_only() {
        let dir = tempfile::tempdir().expect("temp dir");
        let library = dir.path().canonicalize().expect("canonical");
        std::fs::create_dir(library.join("sub")).expect("mkdir");
        std::fs::write(library.join("sub/a.flac"), b"x").expect("write");
        std::fs::write(library.join(".hidden.flac"), b"x").expect("write");

        let ok = resolve("./sub/./a.flac", &library).expect("resolves");
        assert_eq!(ok.relative, Path::new("sub/a.flac"));
        assert_eq!(ok.absolute, library.join("sub/a.flac"));

        let check = |written: &str| resolve(written, &library).expect_err(written);
        assert!(matches!(check(""), Problem::EmptyPath));
        assert!(matches!(check("."), Problem::EmptyPath));
        assert!(matches!(check("/etc/passwd"), Problem::AbsolutePath { .. }));
        assert!(matches!(
            check("sub/../../x.flac"),
            Problem::EscapesLibrary { .. }
        ));
        assert!(matches!(check(".hidden.flac"), Problem::HiddenFile { .. }));
        assert!(matches!(check("sub"), Problem::NotAFile { .. }));
        assert!(matches!(check("b.flac"), Problem::NotFound { .. }));
    }
}
