using System.Collections.Concurrent;
using System.Diagnostics;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Net.Client;
using IoMux.Tests.AspNetCore.Protos;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;

namespace IoMux.Tests.AspNetCore;

/// <summary>What the gRPC service saw of its calls, for the tests to assert on the server side.</summary>
public sealed class EchoProbe
{
    public sealed record WaitCall(TaskCompletionSource Started, TaskCompletionSource<long> CancelledAt);

    private readonly ConcurrentDictionary<string, WaitCall> _waits = new();

    public WaitCall Wait(string id) => _waits.GetOrAdd(id, _ => new WaitCall(
        new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously),
        new TaskCompletionSource<long>(TaskCreationOptions.RunContinuationsAsynchronously)));
}

/// <summary>The service of Protos/echo.proto (Grpc.AspNetCore), one method per call shape.</summary>
public sealed class EchoService(EchoProbe probe) : Echo.EchoBase
{
    public override Task<EchoReply> Say(EchoRequest request, ServerCallContext context) =>
        Task.FromResult(new EchoReply { Text = request.Text, Length = request.Payload.Length });

    public override async Task Count(CountRequest request, IServerStreamWriter<EchoReply> responseStream, ServerCallContext context)
    {
        for (int i = 0; i < request.Count; i++)
            await responseStream.WriteAsync(new EchoReply { Index = i, Text = $"reply {i}" }, context.CancellationToken);
    }

    public override async Task<SumReply> Sum(IAsyncStreamReader<EchoRequest> requestStream, ServerCallContext context)
    {
        var sum = new SumReply();
        await foreach (var request in requestStream.ReadAllAsync(context.CancellationToken))
        {
            sum.Messages++;
            sum.Bytes += request.Payload.Length;
        }
        return sum;
    }

    public override async Task<EchoReply> Wait(WaitRequest request, ServerCallContext context)
    {
        var call = probe.Wait(request.Id);
        // The moment the call's token fires: the client's cancellation (RST_STREAM) or the deadline.
        using var registration = context.CancellationToken.Register(() => call.CancelledAt.TrySetResult(Stopwatch.GetTimestamp()));
        call.Started.TrySetResult();
        await Task.Delay(request.DelayMs, context.CancellationToken);
        return new EchoReply { Text = "waited" };
    }
}

/// <summary>
/// A gRPC service (Grpc.AspNetCore) and its client (Grpc.Net.Client) over the transport: unary, server streaming,
/// client streaming, a deadline, and a client's cancellation reaching the server's call token. The same tests run
/// on Kestrel's socket transport as the reference.
/// </summary>
[TestFixtureSource(typeof(ApplicationTargets), nameof(ApplicationTargets.All))]
[NonParallelizable]
public sealed class GrpcTests(TransportTarget target)
{
    private ApplicationHost _host = null!;
    private GrpcChannel _channel = null!;
    private Echo.EchoClient _client = null!;

    private EchoProbe Probe => _host.Services.GetRequiredService<EchoProbe>();

    [OneTimeSetUp]
    public async Task Start()
    {
        if (target.Backend?.UnsupportedReason() is { } reason)
            Assert.Ignore(reason);
        // One app per transport for the fixture (gRPC's start-up is the slow part); h2c, as services inside a
        // cluster usually run, with one TLS test below.
        _host = await StartAsync(ApplicationHost.Loopback(HttpProtocols.Http2));
        _channel = GrpcChannel.ForAddress(_host.BaseAddress, new GrpcChannelOptions { HttpHandler = new SocketsHttpHandler() });
        _client = new Echo.EchoClient(_channel);
    }

    private Task<ApplicationHost> StartAsync(Action<KestrelServerOptions> listen) => ApplicationHost.StartAsync(target, listen,
        services =>
        {
            services.AddGrpc();
            services.AddSingleton<EchoProbe>();
        },
        app => app.MapGrpcService<EchoService>());

    [OneTimeTearDown]
    public async Task Stop()
    {
        _channel?.Dispose();
        if (_host is not null)
            await _host.DisposeAsync();
    }

    private static DateTime Deadline => DateTime.UtcNow.AddSeconds(20);

    [Test, CancelAfter(30_000)]
    public async Task UnaryCallsConcurrentlyOnOneChannel(CancellationToken token)
    {
        var payload = ByteString.CopyFrom(TestApp.Pattern(100_000));
        var replies = await Task.WhenAll(Enumerable.Range(0, 32).Select(i =>
            _client.SayAsync(new EchoRequest { Text = $"call {i}", Payload = payload }, deadline: Deadline, cancellationToken: token).ResponseAsync));
        Assert.That(replies.Select(r => r.Text), Is.EqualTo(Enumerable.Range(0, 32).Select(i => $"call {i}")));
        Assert.That(replies.Select(r => r.Length), Is.All.EqualTo(100_000));
    }

    [Test, CancelAfter(30_000)]
    public async Task ServerStreamingDeliversEveryMessageInOrder(CancellationToken token)
    {
        using var call = _client.Count(new CountRequest { Count = 500 }, deadline: Deadline, cancellationToken: token);
        var indices = new List<int>();
        await foreach (var reply in call.ResponseStream.ReadAllAsync(token))
            indices.Add(reply.Index);
        Assert.That(indices, Is.EqualTo(Enumerable.Range(0, 500)));
        Assert.That(call.GetStatus().StatusCode, Is.EqualTo(StatusCode.OK));
    }

    [Test, CancelAfter(30_000)]
    public async Task ClientStreamingIsSummedAfterTheClientCompletes(CancellationToken token)
    {
        using var call = _client.Sum(deadline: Deadline, cancellationToken: token);
        long bytes = 0;
        for (int i = 0; i < 64; i++)
        {
            int size = i == 63 ? 1 << 20 : i * 1000; // the last message larger than every flow-control window
            bytes += size;
            await call.RequestStream.WriteAsync(new EchoRequest { Payload = ByteString.CopyFrom(new byte[size]) }, token);
        }
        await call.RequestStream.CompleteAsync();
        var sum = await call.ResponseAsync;
        Assert.That(sum.Messages, Is.EqualTo(64));
        Assert.That(sum.Bytes, Is.EqualTo(bytes));
    }

    [Test, CancelAfter(30_000)]
    public async Task AnExpiredDeadlineIsDeadlineExceededOnBothSides(CancellationToken token)
    {
        string id = $"deadline-{Guid.NewGuid():N}";
        var clock = Stopwatch.StartNew();
        var error = await Assert.ThrowsAsync<RpcException>(async () =>
            await _client.WaitAsync(new WaitRequest { DelayMs = 30_000, Id = id }, deadline: DateTime.UtcNow.AddMilliseconds(1500), cancellationToken: token));
        Assert.That(error!.StatusCode, Is.EqualTo(StatusCode.DeadlineExceeded));
        Assert.That(clock.Elapsed, Is.LessThan(TimeSpan.FromSeconds(6)), "the client gave up at the deadline, not the 30 s the server would wait");
        // The server enforces the deadline it was sent (grpc-timeout) on its own call token. The deadline leaves the
        // handler time to start (300 ms did not always under load: the call was reset before it was dispatched, and
        // there was no server token to fire); a handler that never started is reported as such.
        var call = Probe.Wait(id);
        Assert.That(call.Started.Task.IsCompleted, Is.True, "the server's handler never started within the 1.5 s deadline");
        long cancelledAt = await call.CancelledAt.Task.WaitAsync(TimeSpan.FromSeconds(5), token);
        Assert.That(Stopwatch.GetElapsedTime(cancelledAt), Is.LessThan(TimeSpan.FromSeconds(5)));
    }

    [Test, CancelAfter(30_000)]
    public async Task AClientsCancellationFiresTheServersCallTokenWithinASecond(CancellationToken token)
    {
        string id = $"cancel-{Guid.NewGuid():N}";
        var call = Probe.Wait(id);
        using var cancel = CancellationTokenSource.CreateLinkedTokenSource(token);
        using var pending = _client.WaitAsync(new WaitRequest { DelayMs = 30_000, Id = id }, deadline: Deadline, cancellationToken: cancel.Token);
        await call.Started.Task.WaitAsync(TimeSpan.FromSeconds(10), token);

        long cancelledAt = Stopwatch.GetTimestamp();
        cancel.Cancel();
        var error = await Assert.ThrowsAsync<RpcException>(async () => await pending.ResponseAsync);
        Assert.That(error!.StatusCode, Is.EqualTo(StatusCode.Cancelled));
        long firedAt = await call.CancelledAt.Task.WaitAsync(TimeSpan.FromSeconds(5), token);
        Assert.That(Stopwatch.GetElapsedTime(cancelledAt, firedAt), Is.LessThan(TimeSpan.FromSeconds(1)),
            "ServerCallContext.CancellationToken fired within 1 s of the client's cancellation");

        // The connection survives the reset stream: the next call on the channel is answered.
        var reply = await _client.SayAsync(new EchoRequest { Text = "after" }, deadline: Deadline, cancellationToken: token);
        Assert.That(reply.Text, Is.EqualTo("after"));
    }

    [Test, CancelAfter(30_000)]
    public async Task UnaryOverTlsWithAlpn(CancellationToken token)
    {
        using var certificate = ApplicationHost.SelfSignedCertificate();
        await using var host = await StartAsync(ApplicationHost.Loopback(HttpProtocols.Http1AndHttp2, certificate));
        using var channel = GrpcChannel.ForAddress(host.BaseAddress, new GrpcChannelOptions
        {
            HttpHandler = new SocketsHttpHandler
            {
                SslOptions = { RemoteCertificateValidationCallback = (_, cert, _, _) => cert?.GetCertHashString() == certificate.GetCertHashString() },
            },
        });
        var reply = await new Echo.EchoClient(channel).SayAsync(new EchoRequest { Text = "tls", Payload = ByteString.CopyFrom(new byte[5000]) },
            deadline: Deadline, cancellationToken: token);
        Assert.That(host.BaseAddress.Scheme, Is.EqualTo("https"));
        Assert.That((reply.Text, reply.Length), Is.EqualTo(("tls", 5000L)));
    }
}
