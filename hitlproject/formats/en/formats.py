"""The console's dates and times, as its own pages write them ("2026-12-03 14:38:05 UTC", in
the console's time zone, named as its sentences name it), so that a list, a record's page and
its history agree, where Django's English default wrote "Dec. 3, 2026, 2:38 p.m." beside them.
Only how they are shown: what a form takes is Django's default for English, unchanged."""

DATE_FORMAT = "Y-m-d"
DATETIME_FORMAT = "Y-m-d H:i:s T"
SHORT_DATE_FORMAT = "Y-m-d"
SHORT_DATETIME_FORMAT = "Y-m-d H:i T"
