"""Ground truth for the data tests, from the data README: class counts of the published MNIST files and
the SHA-256 of one small real file (the MNIST test labels) that the format and download tests read."""

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
LABELS_GZ = "t10k-labels-idx1-ubyte.gz"
LABELS_SHA = "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"
