"""ImageExampleGen: images from a folder, TFRecords or TFDS into checked tf.Example splits."""
