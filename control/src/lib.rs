//! coregate-control: the control thread.
