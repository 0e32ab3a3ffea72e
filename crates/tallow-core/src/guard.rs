//! Panics must never cross the FFI boundary or kill an engine thread silently: every entry point
//! that runs model code goes through [`catch_panic`], which turns a panic into an `INTERNAL` error.

use crate::error::{Error, ErrorCode, Result};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Runs `f`, converting a panic into `Err(INTERNAL)` carrying the panic message.
pub fn catch_panic<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(result) => result,
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic payload".to_string());
            Err(Error::new(
                ErrorCode::Internal,
                format!("a panic was caught inside tallow (this is a bug): {what}"),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_an_internal_error() {
        let err = catch_panic::<()>(|| panic!("boom {}", 7)).unwrap_err();
        assert_eq!(err.code, ErrorCode::Internal);
        assert!(err.message.contains("boom 7"), "{}", err.message);
    }

    #[test]
    fn results_pass_through() {
        assert_eq!(catch_panic(|| Ok(3)).unwrap(), 3);
    }
}
