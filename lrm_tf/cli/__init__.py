"""The command line: flags generated from `lrm_tf.config`, the table of modes, exit statuses."""
