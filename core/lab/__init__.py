"""The lecture's last third, trained live: the autoencoder, U-Net vs autoencoder, Siamese one-shot
learning and plain vs residual depth. Each task is a module with a frozen `Config` and a `train`
function on the shared loop (`core.train.loop`); `common` runs any of them as a job, headless or
through the runner, and reads their results back."""
