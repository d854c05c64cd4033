using System.Net;
using System.Net.Sockets;
using System.Text;
using Microsoft.Extensions.Options;

namespace IoMux.Tests.AspNetCore;

/// <summary>The IoMux transport's options from configuration (the section "IoMux"), on epoll. Kestrel's socket
/// transport binds none of its options from configuration, so there is no reference run.</summary>
[NonParallelizable]
public sealed class TransportOptionsTests
{
    private static TransportTarget Epoll => TransportTarget.All().First(t => t.Name == "epoll");

    [Test, CancelAfter(60_000)]
    public async Task OptionsAreBoundFromTheIoMuxSection(CancellationToken token)
    {
        await using var app = await TestApp.StartAsync(Epoll, configuration: new Dictionary<string, string?> { ["IoMux:NoDelay"] = "false" });
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(IPAddress.Loopback, app.Port, token);
        await socket.SendAsync(Encoding.ASCII.GetBytes("GET /socket HTTP/1.0\r\nHost: x\r\n\r\n"), token);
        var text = new StringBuilder();
        var buffer = new byte[4096];
        for (int n; (n = await socket.ReceiveAsync(buffer.AsMemory(), token).AsTask().WaitAsync(TimeSpan.FromSeconds(30), token)) > 0;)
            text.Append(Encoding.Latin1.GetString(buffer, 0, n));
        Assert.That(text.ToString(), Does.EndWith(" nodelay=False"), "IoMux:NoDelay=false reached the accepted sockets");
    }

    // The start is bounded by WaitAsync (a hang fails with TimeoutException, not the expected exception).
    [Test]
    public async Task AValueThatDoesNotParseFailsTheStartNamingTheKey()
    {
        var failure = await Assert.ThrowsAsync<OptionsValidationException>(async () =>
        {
            await using var app = await TestApp.StartAsync(Epoll, configuration: new Dictionary<string, string?> { ["IoMux:Backlog"] = "lots" })
                .WaitAsync(TimeSpan.FromSeconds(60));
        });
        Assert.That(failure!.Message, Does.Contain("IoMux:Backlog").And.Contain("lots"));
    }

    [Test]
    public async Task AnUnknownBackendFailsTheStart()
    {
        var failure = await Assert.ThrowsAsync<OptionsValidationException>(async () =>
        {
            await using var app = await TestApp.StartAsync(Epoll, transport: o =>
            {
                o.PollerOverride = null;
                o.Backend = "no-such-backend";
            }).WaitAsync(TimeSpan.FromSeconds(60));
        });
        Assert.That(failure!.Message, Does.Contain("Backend"));
    }
}
