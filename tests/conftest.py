"""Shared pytest setup."""

import tensorflow as tf


def _split_cpu_into_two_logical_devices():
    """Exposes the first CPU as two logical devices so MirroredStrategy tests run on one machine.

    Must run before any other TensorFlow op initialises the runtime. Does nothing
    if logical devices are already configured; if the runtime is already
    initialised, the configuration is left as it is and multi-device tests skip.
    """
    cpu = tf.config.list_physical_devices("CPU")[0]
    if tf.config.get_logical_device_configuration(cpu) is not None:
        return
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    except RuntimeError:
        pass


_split_cpu_into_two_logical_devices()
