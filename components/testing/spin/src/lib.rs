//! Test fixture: loops forever on every check.
wit_bindgen::generate!({ world: "filter", path: "../../wit" });

struct Spin;

impl Guest for Spin {
    fn load_policy(_: Vec<u8>, _: Vec<u8>, _: Vec<u8>) -> Result<gatehouse::policy::loading::Loaded, String> {
        Ok(gatehouse::policy::loading::Loaded { revision: 0, headers: None })
    }
    fn check(req: RequestHead, ctx: Context) -> Verdict {
        let mut n: u64 = req.path.len() as u64;
        loop {
            n = std::hint::black_box(n.wrapping_mul(6364136223846793005).wrapping_add(1));
            if n == 42 {
                return Verdict::Allow(ctx);
            }
        }
    }
}

export!(Spin);
