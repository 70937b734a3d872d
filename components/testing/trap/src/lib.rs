//! Test fixture: traps (panics) on every check.
wit_bindgen::generate!({ world: "filter", path: "../../wit" });

struct Trap;

impl Guest for Trap {
    fn load_policy(_: Vec<u8>, _: Vec<u8>, _: Vec<u8>) -> Result<gatehouse::policy::loading::Loaded, String> {
        Ok(gatehouse::policy::loading::Loaded { revision: 0, headers: None })
    }
    fn check(req: RequestHead, _ctx: Context) -> Verdict {
        panic!("deliberate trap on {}", req.path)
    }
}

export!(Trap);
