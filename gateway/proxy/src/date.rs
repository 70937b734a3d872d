//! The `Date` header of the gateway's own answers (RFC 9110 §6.6.1, IMF-fixdate, as
//! `httpdate` formats it for hyper), formatted once a second per thread.

use std::cell::RefCell;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

thread_local! {
    static CACHE: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
}

/// Call `f` with the current time as an IMF-fixdate.
pub fn with_now<R>(f: impl FnOnce(&str) -> R) -> R {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.0 != secs {
            *c = (secs, httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(secs)));
        }
        f(&c.1)
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn imf_fixdate() {
        let now = super::with_now(str::to_string);
        let parsed = httpdate::parse_http_date(&now).unwrap();
        let age = std::time::SystemTime::now().duration_since(parsed).unwrap();
        assert!(age < std::time::Duration::from_secs(2), "{now}");
        assert!(now.ends_with(" GMT") && now.len() == 29, "{now}");
    }
}
