//! DFME (`me.dfme`): declared so recipes check; no loader, because its layout
//! and label files ship only with the licence package.

use super::*;

/// This corpus's kind.
pub(super) fn kind() -> Kind {
    me("me.dfme", "DFME (CCAC 2024 challenge): train / TestA / TestB partitions, 7 classes. No loader yet: the on-disk layout and label files ship only with the licence package and are not public, so recipes check but do not run on it.", "DFME_ROOT", ME_AUS, &["7class"], "7class")
        .build()
}
