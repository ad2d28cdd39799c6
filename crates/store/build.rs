// `embed_migrations!` reads the migration folders at compile time; tell Cargo to rebuild this
// crate when a migration is added or edited.
fn main() {
    println!("cargo:rerun-if-changed=../../migrations");
}
