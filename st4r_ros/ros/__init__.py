"""The ROS face: messages <-> QueryEngine, live (rclpy) and offline (rosbags).

- typestore.py: a rosbags Typestore with st4r_ros's msg/ and srv/ registered (no ROS needed).
- conversions.py: requests from commands, service calls and camera messages; results, masks,
  overlays, target clouds and markers to messages; written once for rclpy and rosbags classes.
- requests.py: the bounded request queue between the node's callbacks and its worker.
- replay.py: `st4r replay`, a rosbag2 of commands and camera poses in, the node's outputs out.

Nothing here imports rclpy except node.py, so the package imports on machines without ROS.
"""
