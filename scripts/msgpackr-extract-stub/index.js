throw new Error('msgpackr-extract is stubbed out in this repository');
