'use strict';
throw new Error('sqlite3 is a stand-in here (see scripts/sqlite3-stub/package.json)');
