/**
 * A Nest 11 app whose startup fails after GridlinkModule's client connected. Env: GRID_ENDPOINTS,
 * FAIL = 'init' (a provider's onModuleInit throws, createApplicationContext), 'build' (a
 * provider's constructor throws, NestFactory.create with abortOnError: false), 'testing' (the
 * same provider, @nestjs/testing's Test.createTestingModule(...).compile()), 'microservice' (the
 * onModuleInit one, NestFactory.createMicroservice on Nest's TCP transport at 127.0.0.1, then
 * listen(), which runs the hooks) or 'microservice-build' (the constructor one, createMicroservice
 * with abortOnError: false). Prints
 * `FAILED <message>` and then does nothing: the process must end by itself, which it does only if
 * the grid client was closed (its sockets would keep it alive).
 */
import 'reflect-metadata';
import { Inject, Injectable, Module, type OnModuleInit } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Transport, type MicroserviceOptions } from '@nestjs/microservices';
import { Test } from '@nestjs/testing';
import { GRID_CLIENT, GridlinkModule } from '@gridlink/nest';

@Injectable()
class FailsToInit implements OnModuleInit {
  constructor(@Inject(GRID_CLIENT) readonly client: unknown) {}
  onModuleInit(): void {
    throw new Error('init failed');
  }
}

@Injectable()
class FailsToBuild {
  constructor(@Inject(GRID_CLIENT) client: unknown) {
    if (client !== undefined) throw new Error('constructor failed');
  }
}

const endpoints = (process.env.GRID_ENDPOINTS ?? '').split(',').filter(Boolean);
const mode = process.env.FAIL;

@Module({ imports: [GridlinkModule.forRoot({ client: { endpoints } })], providers: [mode === 'init' || mode === 'microservice' ? FailsToInit : FailsToBuild] })
class AppModule {}

const tcp: MicroserviceOptions = { transport: Transport.TCP, options: { host: '127.0.0.1', port: 0 } };

try {
  if (mode === 'build') await NestFactory.create(AppModule, { logger: false, abortOnError: false });
  else if (mode === 'microservice') await (await NestFactory.createMicroservice<MicroserviceOptions>(AppModule, { ...tcp, logger: false })).listen();
  else if (mode === 'microservice-build') await NestFactory.createMicroservice<MicroserviceOptions>(AppModule, { ...tcp, logger: false, abortOnError: false });
  else if (mode === 'testing') await Test.createTestingModule({ imports: [AppModule] }).setLogger({ log: () => undefined, error: () => undefined, warn: () => undefined }).compile();
  else await NestFactory.createApplicationContext(AppModule, { logger: false });
  process.stdout.write('STARTED\n');
} catch (e) {
  process.stdout.write(`FAILED ${e instanceof Error ? e.message : String(e)}\n`);
}
