//! Test fixture: allocates memory without bound on every check.
wit_bindgen::generate!({ world: "filter", path: "../../wit" });

struct Hog;

impl Guest for Hog {
    fn load_policy(_: Vec<u8>, _: Vec<u8>, _: Vec<u8>) -> Result<gatehouse::policy::loading::Loaded, String> {
        Ok(gatehouse::policy::loading::Loaded { revision: 0, headers: None })
    }
    fn check(_req: RequestHead, ctx: Context) -> Verdict {
        let mut v: Vec<Vec<u8>> = Vec::new();
        loop {
            v.push(vec![1u8; 1 << 20]);
            if std::hint::black_box(v.len()) == usize::MAX {
                return Verdict::Allow(ctx);
            }
        }
    }
}

export!(Hog);
