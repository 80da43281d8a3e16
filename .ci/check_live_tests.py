"""Fail unless the suite's report shows the live ROS 2 tests (tests/ros_live) run, none skipped."""

import sys
import xml.etree.ElementTree as ElementTree

cases = [case for case in ElementTree.parse(sys.argv[1]).iter('testcase')
         if case.get('classname', '').startswith('tests.ros_live.')]
skipped = [case.get('name') for case in cases if case.find('skipped') is not None]
if not cases or skipped:
    print(f'CI: live ROS 2 tests: {len(cases)} ran, skipped: {skipped or "none"}; '
          'they must run on CI', file=sys.stderr)
    sys.exit(1)
print(f'CI: {len(cases)} live ROS 2 tests ran, none skipped')
