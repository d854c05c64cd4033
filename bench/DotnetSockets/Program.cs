// The baseline IoMux's servers are measured against: idiomatic .NET async sockets (Socket.AcceptAsync,
// ReceiveAsync, SendAsync on the runtime's own epoll engine), one task per connection.
//   DotnetSockets hello PORT | DotnetSockets echo PORT      (runs until killed)
using System.Net;
using System.Net.Sockets;

bool echo = args[0] == "echo";
var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
listener.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
listener.Bind(new IPEndPoint(IPAddress.Loopback, int.Parse(args[1])));
listener.Listen(4096);
var response = "HTTP/1.1 200 OK\r\nServer: dotnet\r\nContent-Length: 13\r\nContent-Type: text/plain\r\n\r\nHello, World!"u8.ToArray();
while (true)
{
    var socket = await listener.AcceptAsync();
    socket.NoDelay = true;
    _ = echo ? Echo(socket) : Hello(socket, response);
}

static async Task Echo(Socket socket)
{
    var buffer = new byte[16 * 1024];
    using (socket)
    {
        while (true)
        {
            int n = await socket.ReceiveAsync(buffer, SocketFlags.None);
            if (n == 0)
                return;
            for (int sent = 0; sent < n;)
                sent += await socket.SendAsync(buffer.AsMemory(sent, n - sent), SocketFlags.None);
        }
    }
}

static async Task Hello(Socket socket, byte[] response)
{
    var buffer = new byte[16 * 1024];
    int have = 0;
    using (socket)
    {
        while (true)
        {
            int n = await socket.ReceiveAsync(buffer.AsMemory(have), SocketFlags.None);
            if (n == 0)
                return;
            have += n;
            int start = 0, end;
            while ((end = buffer.AsSpan(start, have - start).IndexOf("\r\n\r\n"u8)) >= 0)
            {
                await socket.SendAsync(response, SocketFlags.None);
                start += end + 4;
            }
            buffer.AsSpan(start, have - start).CopyTo(buffer);
            have -= start;
            if (have == buffer.Length)
                have = 0;
        }
    }
}
