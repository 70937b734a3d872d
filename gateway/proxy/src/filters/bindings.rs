//! Host bindings generated from `components/wit` (the `filter` world).

#![allow(missing_docs)]

wasmtime::component::bindgen!({
    world: "filter",
    path: "../../components/wit",
    // The request crosses into the component from borrowed text: no copies on the
    // host side per request.
    ownership: Borrowing { duplicate_if_necessary: true },
});
