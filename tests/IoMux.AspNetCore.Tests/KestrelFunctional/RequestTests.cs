using System.Net;
using System.Net.Sockets;
using System.Text;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Connections.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;

namespace IoMux.Tests.AspNetCore;

/// <summary>Restated from aspnetcore's FunctionalTests/RequestTests.cs.</summary>
public sealed partial class KestrelFunctionalTests
{
    [Test, CancelAfter(60_000), Description("RequestTests.LargeUpload (10 MiB, bytes checked)")]
    public async Task ALargeUploadArrivesWholeAndInOrder(CancellationToken token)
    {
        const int length = 10 * 1024 * 1024, chunk = 1024 * 1024;
        _host.Handler = async ctx =>
        {
            long total = 0;
            var buffer = new byte[chunk];
            bool inOrder = true;
            for (int n; (n = await ctx.Request.Body.ReadAsync(buffer)) > 0; total += n)
                for (int i = 0; i < n && inOrder; i++)
                    inOrder = buffer[i] == (byte)((total + i) % 256);
            await ctx.Response.WriteAsync($"bytesRead: {total} inOrder: {inOrder}");
        };
        using var client = await RawClient.ConnectAsync(_host.Port(), token);
        await client.SendAsync(token, "POST / HTTP/1.1", "Host:", $"Content-Length: {length}", "", "");
        var block = new byte[chunk];
        for (int i = 0; i < block.Length; i++)
            block[i] = (byte)i;
        for (int i = 0; i < length / chunk; i++)
            await client.SendAsync(block, token);
        await client.ReceiveAsync($"bytesRead: {length} inOrder: True", token, 30);
    }

    [Test, CancelAfter(30_000), Description("RequestTests.RemoteIPv4Address")]
    public async Task TheConnectionsAddressesAreTheSocketsOnIPv4(CancellationToken token) =>
        await AssertAddressesAsync(_host.Port("http"), IPAddress.Loopback, token);

    [Test, CancelAfter(30_000), Description("RequestTests.RemoteIPv6Address")]
    public async Task TheConnectionsAddressesAreTheSocketsOnIPv6(CancellationToken token) =>
        await AssertAddressesAsync(_host.Port("ipv6"), IPAddress.IPv6Loopback, token);

    private async Task AssertAddressesAsync(int port, IPAddress address, CancellationToken token)
    {
        _host.Handler = ctx => ctx.Response.WriteAsync(
            $"[{ctx.Connection.RemoteIpAddress}]:{ctx.Connection.RemotePort} [{ctx.Connection.LocalIpAddress}]:{ctx.Connection.LocalPort}|");
        using var client = await RawClient.ConnectAsync(port, token, address);
        await client.SendAsync(token, EmptyGet);
        var local = (IPEndPoint)client.Socket.LocalEndPoint!;
        await client.ReceiveAsync($"[{address}]:{local.Port} [{address}]:{port}|", token);
    }

    [Test, CancelAfter(30_000), Description("RequestTests.DoesNotHangOnConnectionCloseRequest")]
    public async Task AConnectionCloseRequestGetsItsResponseThenAFin(CancellationToken token)
    {
        _host.Handler = ctx => ctx.Response.WriteAsync("hello, world");
        using var client = await RawClient.ConnectAsync(_host.Port(), token);
        await client.SendAsync(token, "GET / HTTP/1.1", "Host:", "Connection: close", "", "");
        Assert.That(await client.ReadToEndAsync(token), Is.EqualTo("FIN"), "the server closes after the response, in order");
        Assert.That(client.Received, Does.StartWith("HTTP/1.1 200 OK").And.Contain("\r\nConnection: close\r\n").And.EndWith(ChunkedHello));
    }

    [Test, CancelAfter(30_000), Description("RequestTests.CanHandleMultipleConcurrentRequests")]
    public async Task TwoConnectionsAreServedAtTheSameTime(CancellationToken token)
    {
        int requests = 0;
        var second = Signal();
        _host.Handler = async ctx =>
        {
            if (Interlocked.Increment(ref requests) == 1)
                await second.Task.WaitAsync(TimeSpan.FromSeconds(10)); // answers only once the other request is in
            else
                second.TrySetResult();
        };
        using var one = await RawClient.ConnectAsync(_host.Port(), token);
        using var two = await RawClient.ConnectAsync(_host.Port(), token);
        await one.SendAsync(token, EmptyGet);
        await two.SendAsync(token, EmptyGet);
        await one.ReceiveAsync("\r\n\r\n", token);
        await two.ReceiveAsync("\r\n\r\n", token);
        Assert.That(one.Received, Does.StartWith("HTTP/1.1 200 OK"));
    }

    [Test, CancelAfter(30_000), Description("RequestTests.ConnectionResetPriorToRequestIsLoggedAsDebug")]
    public async Task AResetBeforeTheRequestIsLoggedAtDebugOnly(CancellationToken token)
    {
        var client = await RawClient.ConnectAsync(_host.Port(), token);
        await _host.WaitForLogAsync(l => l.Event.Name == "ConnectionStart", "ConnectionStart", token);
        client.Reset();
        await _host.WaitForLogAsync(l => l.IsTransport && l.Event.Name == "ConnectionReset", "the transport's ConnectionReset", token);
        Assert.That(Louder(_host), Is.Empty, "nothing above Debug from the transport or Kestrel");
    }

    [Test, CancelAfter(30_000), Description("RequestTests.ConnectionResetBetweenRequestsIsLoggedAsDebug")]
    public async Task AResetBetweenRequestsIsLoggedAtDebugOnly(CancellationToken token)
    {
        var client = await RawClient.ConnectAsync(_host.Port(), token);
        await client.SendAsync(token, EmptyGet);
        await client.ReceiveAsync("\r\n\r\n", token); // all of it: a write failure would log louder
        client.Reset();
        await _host.WaitForLogAsync(l => l.IsTransport && l.Event.Name == "ConnectionReset", "the transport's ConnectionReset", token);
        Assert.That(Louder(_host), Is.Empty, "nothing above Debug from the transport or Kestrel");
    }

    [Test, CancelAfter(30_000), Description("RequestTests.ConnectionResetMidRequestIsLoggedAsDebug")]
    public async Task AResetDuringARequestIsLoggedAtDebugOnly(CancellationToken token)
    {
        var started = Signal();
        var release = Signal();
        _host.Handler = async ctx =>
        {
            started.TrySetResult();
            await release.Task.WaitAsync(TimeSpan.FromSeconds(20));
        };
        try
        {
            var client = await RawClient.ConnectAsync(_host.Port(), token);
            await client.SendAsync(token, EmptyGet);
            await Within(started.Task, token);
            client.Reset();
            await _host.WaitForLogAsync(l => l.IsTransport && l.Event.Name == "ConnectionReset", "the transport's ConnectionReset", token);
        }
        finally
        {
            release.TrySetResult();
        }
        Assert.That(Louder(_host), Is.Empty, "nothing above Debug from the transport or Kestrel");
    }

    [Test, CancelAfter(30_000), Description("RequestTests.ThrowsOnReadAfterConnectionError")]
    public async Task ReadingTheBodyAfterAResetThrowsConnectionResetException(CancellationToken token)
    {
        var started = Signal();
        var reset = Signal();
        var outcome = Signal<Exception?>();
        _host.Handler = async ctx =>
        {
            started.TrySetResult();
            await reset.Task.WaitAsync(TimeSpan.FromSeconds(10));
            try
            {
                await ctx.Request.Body.ReadAsync(new byte[1]).AsTask().WaitAsync(TimeSpan.FromSeconds(10));
                outcome.TrySetResult(null);
            }
            catch (Exception e)
            {
                outcome.TrySetResult(e);
            }
        };
        var client = await RawClient.ConnectAsync(_host.Port(), token);
        await client.SendAsync(token, "GET / HTTP/1.1", "Host:", "Content-Length: 1", "", "");
        await Within(started.Task, token);
        client.Reset();
        reset.TrySetResult();
        Assert.That(await Within(outcome.Task, token, 20), Is.InstanceOf<ConnectionResetException>());
    }

    [Test, CancelAfter(30_000), Description("RequestTests.ConnectionClosedTokenFiresOnClientFIN")]
    public async Task TheConnectionClosedTokenFiresOnTheClientsFin(CancellationToken token)
    {
        var started = Signal();
        var closed = Signal();
        _host.Handler = ctx =>
        {
            ctx.Features.Get<IConnectionLifetimeFeature>()!.ConnectionClosed.Register(() => closed.TrySetResult());
            started.TrySetResult();
            return Task.CompletedTask;
        };
        using var client = await RawClient.ConnectAsync(_host.Port(), token);
        await client.SendAsync(token, EmptyGet);
        await Within(started.Task, token);
        client.Socket.Shutdown(SocketShutdown.Send);
        await Within(closed.Task, token);
    }

    [Test, CancelAfter(30_000), Description("RequestTests.ConnectionClosedTokenFiresOnServerFIN")]
    public async Task TheConnectionClosedTokenFiresWhenTheServerEndsTheConnection(CancellationToken token)
    {
        var closed = Signal();
        _host.Handler = ctx =>
        {
            ctx.Features.Get<IConnectionLifetimeFeature>()!.ConnectionClosed.Register(() => closed.TrySetResult());
            return Task.CompletedTask;
        };
        using var client = await RawClient.ConnectAsync(_host.Port(), token);
        await client.SendAsync(token, "GET / HTTP/1.1", "Host:", "Connection: close", "", "");
        await Within(closed.Task, token);
        Assert.That(await client.ReadToEndAsync(token), Is.EqualTo("FIN"));
        Assert.That(client.Received, Does.StartWith("HTTP/1.1 200 OK").And.Contain("\r\nContent-Length: 0\r\n").And.Contain("\r\nConnection: close\r\n").And.EndWith("\r\n\r\n"));
    }

    [Test, CancelAfter(30_000), Description("RequestTests.ConnectionClosedTokenFiresOnServerAbort")]
    public async Task TheConnectionClosedTokenFiresWhenTheAppAborts(CancellationToken token)
    {
        var closed = Signal();
        _host.Handler = ctx =>
        {
            ctx.Features.Get<IConnectionLifetimeFeature>()!.ConnectionClosed.Register(() => closed.TrySetResult());
            ctx.Abort();
            return Task.CompletedTask;
        };
        using var client = await RawClient.ConnectAsync(_host.Port(), token);
        await client.SendAsync(token, EmptyGet);
        await Within(closed.Task, token);
        Assert.That(await client.ReadToEndAsync(token), Is.EqualTo("RST"), "an abort resets (SocketConnection.Shutdown with a reason)");
        Assert.That(client.Received, Is.Empty);
    }

    [Test, CancelAfter(30_000), Description("RequestTests.RequestsCanBeAbortedMidRead")]
    public async Task AnAbortDuringABodyReadCancelsTheReadAndOnlyThatRequest(CancellationToken token)
    {
        int requestId = 0;
        var aborted = Signal<int>();
        var read = Signal<Exception?>();
        _host.Handler = async ctx =>
        {
            int id = Interlocked.Increment(ref requestId);
            var lifetime = ctx.Features.Get<IHttpRequestLifetimeFeature>()!;
            lifetime.RequestAborted.Register(() => aborted.TrySetResult(id));
            if (id == 1)
            {
                ctx.Response.ContentLength = 5;
                await ctx.Response.WriteAsync("World");
                return;
            }
            var reading = ctx.Request.Body.CopyToAsync(Stream.Null);
            lifetime.Abort();
            try
            {
                await reading.WaitAsync(TimeSpan.FromSeconds(10));
                read.TrySetResult(null);
            }
            catch (Exception e)
            {
                read.TrySetResult(e);
            }
        };
        using var client = await RawClient.ConnectAsync(_host.Port(), token);
        await client.SendAsync(token, "POST / HTTP/1.1", "Host:", "Content-Length: 5", "", "Hello");
        await client.ReceiveAsync("World", token);
        await client.SendAsync(token, "POST / HTTP/1.1", "Host:", "Content-Length: 5", "", ""); // never the body
        Assert.That(await client.ReadToEndAsync(token), Is.EqualTo("RST"));
        Assert.That(await Within(read.Task, token), Is.InstanceOf<OperationCanceledException>());
        Assert.That(await Within(aborted.Task, token), Is.EqualTo(2), "only the aborted request's token fired");
    }

    [Test, CancelAfter(30_000), Description("RequestTests.AppCanHandleClientAbortingConnectionMidRequest")]
    public async Task AClientResetDuringTheBodyFailsTheReadWithAnIOException(CancellationToken token)
    {
        var started = Signal();
        var read = Signal<Exception?>();
        _host.Handler = async ctx =>
        {
            started.TrySetResult();
            try
            {
                await ctx.Request.Body.CopyToAsync(Stream.Null).WaitAsync(TimeSpan.FromSeconds(10));
                read.TrySetResult(null);
            }
            catch (Exception e)
            {
                read.TrySetResult(e);
            }
        };
        var client = await RawClient.ConnectAsync(_host.Port(), token);
        await client.SendAsync(token, "POST / HTTP/1.1", "Host:", "Content-Length: 8192", "", "");
        await Within(started.Task, token);
        await client.SendAsync(new byte[4096], token);
        client.Reset();
        Assert.That(await Within(read.Task, token, 20), Is.InstanceOf<IOException>());
    }

    [Test, CancelAfter(30_000), Description("RequestTests.ServerCanAbortConnectionAfterUnobservedClose")]
    public async Task TheAppCanAbortAConnectionWhoseCloseTheTransportDidNotSee(CancellationToken token)
    {
        var host = await SmallAsync();
        var clientClosed = Signal();
        var done = Signal<Exception?>();
        host.Handler = async ctx =>
        {
            try
            {
                await clientClosed.Task.WaitAsync(TimeSpan.FromSeconds(10));
                ctx.Abort();
                done.TrySetResult(null);
            }
            catch (Exception e)
            {
                done.TrySetResult(e);
            }
        };
        await SendUntilPausedThenCloseAsync(host, token);
        clientClosed.TrySetResult();
        Assert.That(await Within(done.Task, token), Is.Null);
        await host.WaitForLogAsync(l => l.Event.Name == "ConnectionStop", "Kestrel's ConnectionStop", token);
    }
}
