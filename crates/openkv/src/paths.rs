//! Where a program that opens no path keeps its database.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The default database file of the application `app`, like Deno's per-script default
/// database: `<data directory>/openkv/<app>/kv.sqlite3`, where the data directory is the
/// platform's per-user one:
///
/// | platform | data directory | example |
/// |---|---|---|
/// | Linux and other Unix | `$XDG_DATA_HOME`, else `~/.local/share` | `/home/ada/.local/share/openkv/todo/kv.sqlite3` |
/// | macOS | `~/Library/Application Support` | `/Users/ada/Library/Application Support/openkv/todo/kv.sqlite3` |
/// | Windows | `%APPDATA%` (the roaming application data folder) | `C:\Users\ada\AppData\Roaming\openkv\todo\kv.sqlite3` |
///
/// Nothing is created: [`Kv::open`](crate::Kv::open) creates the file, but not its
/// directories (`std::fs::create_dir_all(path.parent())` first, as `openkv --app NAME set …`
/// does).
///
/// `app` is one path component: 1 to 128 ASCII letters, digits, `.`, `_` or `-`, not
/// starting with `.` (so it can neither escape the directory nor be hidden). Anything else is
/// [`Error::InvalidOption`]; a machine with no home directory is [`Error::Storage`].
///
/// ```
/// let path = openkv::default_database_path("todo-app").unwrap();
/// assert!(path.ends_with("openkv/todo-app/kv.sqlite3"));
/// assert!(openkv::default_database_path("../etc").is_err());
/// ```
pub fn default_database_path(app: &str) -> Result<PathBuf> {
    check_app_name(app)?;
    let base = dirs::data_dir().ok_or_else(|| {
        Error::storage("no per-user data directory on this machine (is HOME set?)")
    })?;
    Ok(database_path_in(&base, app))
}

/// `<base>/openkv/<app>/kv.sqlite3`.
fn database_path_in(base: &Path, app: &str) -> PathBuf {
    base.join("openkv").join(app).join("kv.sqlite3")
}

fn check_app_name(app: &str) -> Result<()> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if app.is_empty() || app.len() > 128 || app.starts_with('.') || !app.chars().all(ok_char) {
        return Err(Error::InvalidOption(format!(
            "invalid application name {app:?}: use 1 to 128 ASCII letters, digits, '.', '_' or \
             '-', not starting with '.'"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_path_is_the_app_directory_under_the_data_directory() {
        let path = database_path_in(Path::new("/data"), "my_app-1.0");
        assert_eq!(path, Path::new("/data/openkv/my_app-1.0/kv.sqlite3"));
    }

    #[test]
    fn names_that_are_not_one_plain_component_are_refused() {
        for bad in ["", ".", "..", ".hidden", "a/b", "a\\b", "a b", "é", &"x".repeat(129)] {
            let err = check_app_name(bad).unwrap_err();
            assert!(matches!(err, Error::InvalidOption(_)), "{bad:?}: {err}");
        }
        for good in ["a", "todo", "My.App_2-x", &"x".repeat(128)] {
            check_app_name(good).unwrap();
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn linux_follows_xdg_data_home() {
        // dirs reads XDG_DATA_HOME when it is an absolute path; the test process may have
        // it or not, so check against what it says.
        let expected = match std::env::var_os("XDG_DATA_HOME").map(PathBuf::from) {
            Some(dir) if dir.is_absolute() => dir,
            _ => PathBuf::from(std::env::var_os("HOME").unwrap()).join(".local/share"),
        };
        assert_eq!(default_database_path("app").unwrap(), expected.join("openkv/app/kv.sqlite3"));
    }
}
