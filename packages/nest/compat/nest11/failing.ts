/**
 * A Nest 11 app whose startup fails after GridlinkModule's client connected. Env: GRID_ENDPOINTS,
 * FAIL = 'init' (a provider's onModuleInit throws, createApplicationContext), 'build' (a
 * provider's constructor throws, NestFactory.create with abortOnError: false), 'testing' (the
 * same provider, @nestjs/testing's Test.createTestingModule(...).compile()), 'microservice' (the
 * onModuleInit one, NestFactory.createMicroservice on Nest's TCP transport at 127.0.0.1, then
 * listen(), which runs the hooks) or 'microservice-build' (the constructor one, createMicroservice
 * with abortOnError: false), 'sse-app-interceptor' (an IdempotencyInterceptor registered as
 * APP_INTERCEPTOR, with an @Sse() route whose method, POST, the default methods take: init()
 * refuses it) or 'sse-use-global' (the same through app.useGlobalInterceptors(), a GET stream
 * with the module's methods taking GET: listen() refuses it). Prints
 * `FAILED <message>` and then does nothing: the process must end by itself, which it does only if
 * the grid client was closed (its sockets would keep it alive).
 */
import 'reflect-metadata';
import { Controller, Inject, Injectable, Module, RequestMethod, Sse, type MessageEvent, type OnModuleInit } from '@nestjs/common';
import { APP_INTERCEPTOR, NestFactory } from '@nestjs/core';
import { EMPTY, type Observable } from 'rxjs';
import { Transport, type MicroserviceOptions } from '@nestjs/microservices';
import { Test } from '@nestjs/testing';
import { GRID_CLIENT, GridlinkModule, IdempotencyInterceptor } from '@gridlink/nest';

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

@Controller('events')
class Events {
  @Sse('post', { method: RequestMethod.POST })
  post(): Observable<MessageEvent> {
    return EMPTY;
  }

  @Sse('get')
  get(): Observable<MessageEvent> {
    return EMPTY;
  }
}

@Module({
  imports: [GridlinkModule.forRoot({ client: { endpoints } })],
  controllers: [Events],
  providers: [{ provide: APP_INTERCEPTOR, useClass: IdempotencyInterceptor }],
})
class AppInterceptorModule {}

@Module({ imports: [GridlinkModule.forRoot({ client: { endpoints }, idempotency: { methods: ['GET'] } })], controllers: [Events] })
class UseGlobalModule {}

const tcp: MicroserviceOptions = { transport: Transport.TCP, options: { host: '127.0.0.1', port: 0 } };

try {
  if (mode === 'build') await NestFactory.create(AppModule, { logger: false, abortOnError: false });
  else if (mode === 'microservice') await (await NestFactory.createMicroservice<MicroserviceOptions>(AppModule, { ...tcp, logger: false })).listen();
  else if (mode === 'microservice-build') await NestFactory.createMicroservice<MicroserviceOptions>(AppModule, { ...tcp, logger: false, abortOnError: false });
  else if (mode === 'sse-app-interceptor') await (await NestFactory.create(AppInterceptorModule, { logger: false })).init();
  else if (mode === 'sse-use-global') {
    const app = await NestFactory.create(UseGlobalModule, { logger: false });
    app.useGlobalInterceptors(app.get(IdempotencyInterceptor));
    await app.listen(0, '127.0.0.1');
  } else if (mode === 'testing') await Test.createTestingModule({ imports: [AppModule] }).setLogger({ log: () => undefined, error: () => undefined, warn: () => undefined }).compile();
  else await NestFactory.createApplicationContext(AppModule, { logger: false });
  process.stdout.write('STARTED\n');
} catch (e) {
  process.stdout.write(`FAILED ${e instanceof Error ? e.message : String(e)}\n`);
}
