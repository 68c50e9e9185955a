//! Models: weights plus run state, and the forward pass.

/// A loaded model ready to run.
pub struct Model {
    _private: (),
}
